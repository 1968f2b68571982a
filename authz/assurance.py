"""A policy goes into service only after it loads and its fixtures pass."""

from __future__ import annotations

import logging
import shutil
import tempfile
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
    results = run_paths([policy_dir / "tests"], LibraryTarget(policy, source), policy.actions)
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


def freeze(policy: Policy, into: Path) -> Path:
    """Write the files of an assured policy to `into/<version>` and return that directory.

    The service loads this copy, never the files an operator edits: a change made after the
    fixtures ran cannot be served unchecked. A version is written once; the directory
    appears whole (written aside, then renamed).
    """
    target = into / policy.version
    if target.is_dir():
        return target
    into.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=into))
    for f in policy.files:
        (incoming / f.path).write_bytes(f.source.encode("utf-8"))
    try:
        incoming.rename(target)
    except OSError:  # another process froze the same version first
        shutil.rmtree(incoming, ignore_errors=True)
        if not target.is_dir():
            raise
    return target
