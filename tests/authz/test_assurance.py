"""Only a policy whose fixtures pass is put into service."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from authz.assurance import assure
from authz.errors import PolicyLoadError
from tests.conftest import POLICIES


def test_the_shipped_policy_is_assured() -> None:
    assert assure(POLICIES, "aspire-prod").actions


def test_a_policy_failing_its_fixtures_is_refused(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "p")
    polar = tmp_path / "p" / "contract_access.polar"
    polar.write_text(polar.read_text().replace('needs_payments("make_payment");', ""))
    with pytest.raises(PolicyLoadError, match="fails"):
        assure(tmp_path / "p", "aspire-prod")


def test_a_policy_without_fixtures_is_refused(tmp_path: Path) -> None:
    shutil.copy(POLICIES / "contract_access.polar", tmp_path)
    with pytest.raises(PolicyLoadError, match="no fixtures"):
        assure(tmp_path, "aspire-prod")
