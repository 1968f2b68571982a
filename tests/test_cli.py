"""The `authz` command line: keys, sync, demo and fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from authz import decisions
from authz.cli import main
from authz.config import Settings
from authz.decisions import CheckRequest
from authz.runtime import Runtime
from tests.conftest import T0, contract


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    return CliRunner()


def test_keys_create_prints_the_key_last_and_it_authenticates(
    runner: CliRunner, rt: Runtime
) -> None:
    out = runner.invoke(
        main, ["keys", "create", "--name", "portal-web", "--scopes", "decide,manage"]
    )
    assert out.exit_code == 0, out.output
    rt.keys.cache_seconds = 0  # the CLI revokes from another runtime (the cache: test_auth)
    key = out.output.strip().splitlines()[-1]
    caller = rt.keys.authenticate(key)
    assert caller is not None and caller.name == "portal-web"
    assert sorted(caller.scopes) == ["decide", "manage"]
    listed = runner.invoke(main, ["keys", "list"])
    assert "portal-web" in listed.output and key not in listed.output
    assert runner.invoke(main, ["keys", "revoke", "portal-web"]).exit_code == 0
    assert rt.keys.authenticate(key) is None
    assert runner.invoke(main, ["keys", "revoke", "portal-web"]).exit_code == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_commands_run_no_version_watch(
    runner: CliRunner, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    watches: list[object] = []
    monkeypatch.setattr(decisions, "VersionWatch", watches.append)
    out = runner.invoke(main, ["keys", "create", "--name", "w", "--scopes", "decide"])
    assert out.exit_code == 0, out.output
    assert watches == []
    Runtime.open(rt.settings).close()  # a service process does run one
    assert len(watches) == 1


def test_keys_create_refuses_unknown_scopes(runner: CliRunner) -> None:
    out = runner.invoke(main, ["keys", "create", "--name", "x", "--scopes", "decide,root"])
    assert out.exit_code == 1 and "root" in out.output


def test_sync_applies_files_in_order(runner: CliRunner, rt: Runtime, tmp_path: Path) -> None:
    rt.directory.put_site("default", "Default", None, True, T0)
    files = []
    for n, state in enumerate(["active", "closed"], start=1):
        body = {
            "source": "aspire-prod",
            "batch_id": f"b{n}",
            "extracted_at": f"2026-11-26T10:0{n}:00Z",
            "accounts": [{"account_id": "A1", "name": "A"}],
            "contracts": [contract("C1", "A1:Customer", state=state)],
        }
        path = tmp_path / f"b{n}.json"
        path.write_text(json.dumps(body))
        files.append(str(path))
    out = runner.invoke(main, ["sync", *files])
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["applied"] for line in out.output.splitlines()] == [True, True]
    rt.directory.put_user("u", "default", "u@example.com", "active", T0)
    assert rt.replica.status().freshness.last_batch_id == "b2"


def test_sync_refuses_an_invalid_file(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"source": "aspire-prod"}')
    out = runner.invoke(main, ["sync", str(path)])
    assert out.exit_code == 1 and "invalid batch" in out.output


def test_demo_builds_a_world_through_sync_and_links(runner: CliRunner, rt: Runtime) -> None:
    out = runner.invoke(main, ["demo", "--contracts", "600", "--accounts", "150", "--users", "12"])
    assert out.exit_code == 0, out.output
    sites = rt.directory.sites()
    assert [s.private_label for s in sites] == [None, "HARBOR", "SUMMIT"]
    assert [s.payments_enabled for s in sites] == [True, False, True]
    users = [rt.directory.get_user(f"user-{i:04d}") for i in range(1, 13)]
    linked = [u for u in users if u.linked_accounts]
    assert len(linked) >= 10
    assert runner.invoke(main, ["demo", "--if-empty"]).output.startswith("the replica holds")


def test_fixture_command_passes_on_the_shipped_suites(runner: CliRunner) -> None:
    out = runner.invoke(main, ["test"])
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1].endswith("passed, 0 failed")


def test_fixture_command_fails_on_a_wrong_expectation(runner: CliRunner, tmp_path: Path) -> None:
    suite = tmp_path / "wrong.yaml"
    suite.write_text(
        "description: a Vendor is wrongly expected to view\n"
        "world:\n"
        "  sites: [{site_id: s}]\n"
        "  accounts: [{account_id: A1}, {account_id: A2}]\n"
        "  contracts:\n"
        "    - {contract_id: C1, state: active, parties: [{account_id: A1, role_type: Customer},"
        " {account_id: A2, role_type: Vendor}]}\n"
        "  users: [{user_id: u, site_id: s, accounts: [A1]}]\n"
        "expect:\n"
        "  - {user: u, contract: C1, allow: [view]}\n"
    )
    out = runner.invoke(main, ["test", str(suite)])
    assert out.exit_code == 1
    assert "FAIL u view_documents C1: expected deny, got allow" in out.output


def test_decisions_after_cli_changes(rt: Runtime, runner: CliRunner) -> None:
    runner.invoke(main, ["demo", "--contracts", "300", "--accounts", "80", "--users", "6"])
    user = rt.directory.get_user("user-0001")
    assert rt.decider.check(CheckRequest(user.user_id, "view", "nope")).allowed is False


def test_policy_check_runs_the_fixtures_and_reports_full_coverage(runner: CliRunner) -> None:
    out = runner.invoke(main, ["policy", "check", "--strict"])
    assert out.exit_code == 0, out.output
    assert "0 failed; 0 coverage gaps" in out.output
    assert "payments_enabled" in out.output


def test_policy_check_refuses_a_policy_that_does_not_load(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "p.polar").write_text("allow(")
    out = runner.invoke(main, ["policy", "check", "--policy-dir", str(tmp_path)])
    assert out.exit_code == 1 and "does not compile" in out.output


def test_policy_check_fails_when_a_fixture_fails(runner: CliRunner, tmp_path: Path) -> None:
    from tests.conftest import POLICIES

    text = (POLICIES / "contract_access.polar").read_text()
    (tmp_path / "contract_access.polar").write_text(text.replace('party_role("Guarantor");', ""))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "s.yaml").write_text(
        (POLICIES / "tests" / "contract_access.yaml").read_text()
    )
    out = runner.invoke(main, ["policy", "check", "--policy-dir", str(tmp_path)])
    assert out.exit_code == 1 and "FAIL" in out.output
