"""A policy goes into service only after it loads and its fixtures pass."""

from __future__ import annotations

import logging
from pathlib import Path

from authz.errors import PolicyLoadError
from authz.fixtures import LibraryTarget, run_paths
from authz.policy import Policy

log = logging.getLogger("authz.assurance")


def assure(policy_dir: Path, source: str) -> Policy:
    """Load the policy and run every suite under `policy_dir/tests` against it.

    :raises PolicyLoadError: when it does not load, has no fixtures, or one fails.
    """
    policy = Policy.load(policy_dir)
    if not (policy_dir / "tests").is_dir():
        raise PolicyLoadError(f"policy {policy.version[:12]} has no fixtures in {policy_dir}/tests")
    results = run_paths([policy_dir / "tests"], LibraryTarget(policy_dir, source), policy.actions)
    cases = sum(r.cases for r in results)
    failures = [f for r in results for f in r.failures]
    if not cases:
        raise PolicyLoadError(f"policy {policy.version[:12]} has no fixtures in {policy_dir}/tests")
    if failures:
        first = "; ".join(f"{f.case}: expected {f.expected}, got {f.got}" for f in failures[:3])
        raise PolicyLoadError(
            f"policy {policy.version[:12]} fails {len(failures)} of {cases} fixture cases: {first}"
        )
    log.info("policy %s passed %d fixture cases", policy.version[:12], cases)
    return policy
