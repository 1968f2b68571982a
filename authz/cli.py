"""The `authz` command: schema, sync, keys, demo world and policy fixtures."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy import func, select

from authz.config import Settings
from authz.errors import AuthzError
from authz.keys import parse_scopes
from authz.models import Contract
from authz.replica import BatchIn
from authz.runtime import Runtime
from authz.schema import upgrade


def _runtime(migrate: bool = False) -> Runtime:
    # No command here decides: a version watch (authz.watch) would only add a thread, a
    # connection and a lease that every change waits on while the command runs.
    return Runtime.open(replace(Settings.from_env(), version_watch=False), migrate=migrate)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """Contract access service: administration commands."""


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    settings = Settings.from_env()
    from authz.db import make_engine

    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    click.echo("schema is up to date")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def sync(files: tuple[str, ...]) -> None:
    """Apply ASPIRE batch files (the JSON of POST /v1/aspire/batches), in order."""
    with _runtime() as rt:
        _sync_files(rt, files)


def _sync_files(rt: Runtime, files: tuple[str, ...]) -> None:
    for name in files:
        try:
            batch = BatchIn.model_validate_json(Path(name).read_bytes())
            r = rt.replica.apply(batch, datetime.now(UTC))
        except ValidationError as exc:
            _fail(f"{name}: invalid batch: {exc}")
            return
        except AuthzError as exc:
            _fail(f"{name}: {exc.code}: {exc.detail}")
            return
        click.echo(
            json.dumps(
                {
                    "file": name,
                    "batch_id": r.batch_id,
                    "applied": r.applied,
                    "data_version": r.data_version,
                    "counts": {"accounts": r.accounts, "contracts": r.contracts, "stale": r.stale},
                }
            )
        )


@main.group()
def keys() -> None:
    """API keys for the portal's services."""


@keys.command("create")
@click.option("--name", required=True, help="who will use the key, e.g. portal-web")
@click.option("--scopes", required=True, help="comma list of decide,manage,sync,audit (or all)")
def keys_create(name: str, scopes: str) -> None:
    """Create a key; its text is printed once, as the last line."""
    try:
        parsed = parse_scopes(scopes)
        with _runtime() as rt:
            key = rt.keys.create(name, parsed, datetime.now(UTC))
    except AuthzError as exc:
        _fail(exc.detail if not hasattr(exc, "errors") else f"{exc.detail}: {exc.errors}")
        return
    click.echo(
        f"created key '{name}' with scopes {','.join(sorted(parsed))}; it is shown only once:"
    )
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """Every key: name, id, scopes, created, revoked."""
    with _runtime() as rt:
        listed = rt.keys.list()
    for k in listed:
        revoked = k.revoked_at.isoformat() if k.revoked_at else "-"
        click.echo(
            f"{k.name}\t{k.key_id}\t{','.join(k.scopes)}\t{k.created_at.isoformat()}\t{revoked}"
        )


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the key with this name."""
    try:
        with _runtime() as rt:
            rt.keys.revoke(name, datetime.now(UTC))
    except AuthzError as exc:
        _fail(exc.detail)
    click.echo(f"revoked key '{name}'")


@main.command()
@click.option("--contracts", default=10_000, show_default=True)
@click.option("--accounts", default=2_000, show_default=True)
@click.option("--users", default=200, show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.option("--if-empty", is_flag=True, help="do nothing when the replica holds contracts")
def demo(contracts: int, accounts: int, users: int, seed: int, if_empty: bool) -> None:
    """Build a demo world: three sites, accounts, contracts in every state, users with links."""
    from authz.demo import DemoSize, build

    with _runtime(migrate=True) as rt:
        if if_empty:
            with rt.db.read() as session:
                held = session.scalar(select(func.count()).select_from(Contract)) or 0
            if held:
                click.echo(f"the replica holds {held} contracts already; no demo world loaded")
                return
        size = DemoSize(accounts=accounts, contracts=contracts, users=users, seed=seed)
        build(rt, size, click.echo)


@main.group("audit")
def audit_group() -> None:
    """The decision log."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check the hash chain of the decision log; exit 1 on any edit, deletion or reordering."""
    from authz import audit

    with _runtime() as rt:
        checked, problems = audit.verify(rt.db)
    for p in problems:
        click.echo(f"entry {p.seq}: {p.what}")
    click.echo(f"{checked} entries checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


@audit_group.command("prune")
@click.option(
    "--older-than-days", type=int, default=None, help="default: AUTHZ_DECISION_RETENTION_DAYS (400)"
)
def audit_prune(older_than_days: int | None) -> None:
    """Delete decisions older than the retention; the chain still verifies afterwards."""
    from datetime import timedelta

    from authz import audit

    days = older_than_days if older_than_days is not None else Settings.from_env().retention_days
    with _runtime() as rt:
        gone = audit.prune(rt.db, datetime.now(UTC) - timedelta(days=days))
    click.echo(f"pruned {gone} decisions older than {days} days")


@main.group("policy")
def policy_group() -> None:
    """The policy files."""


@policy_group.command("check")
@click.option(
    "--policy-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="default: AUTHZ_POLICY_DIR",
)
@click.option("--strict", is_flag=True, help="also fail when the fixtures leave a gap")
def policy_check(policy_dir: Path | None, strict: bool) -> None:
    """Load the policy, run its fixtures (DIR/tests) and report their coverage."""
    from authz.fixtures import LibraryTarget, coverage, run_paths
    from authz.policy import Policy

    settings = Settings.from_env()
    directory = policy_dir or settings.policy_dir
    try:
        policy = Policy.load(directory)
    except AuthzError as exc:
        _fail(exc.detail)
        return
    click.echo(f"policy {policy.version} loaded from {directory}")
    target = LibraryTarget(directory, settings.aspire_source)
    results = run_paths([directory / "tests"], target, policy.actions)
    cases = sum(r.cases for r in results)
    failures = [f for r in results for f in r.failures]
    for f in failures[:20]:
        click.echo(f"  FAIL {f.case}: expected {f.expected}, got {f.got}")
    cov = coverage(results, policy)
    click.echo("conditions (seen passing / failing):")
    for name, (passed, failed) in cov.conditions.items():
        click.echo(f"  {name:<36} {'yes' if passed else 'NO ':>4} / {'yes' if failed else 'NO'}")
    click.echo("actions (seen allowed / denied):")
    for action, (yes, no) in cov.actions.items():
        click.echo(f"  {action:<36} {'yes' if yes else 'NO ':>4} / {'yes' if no else 'NO'}")
    click.echo(
        f"{cases - len(failures)} passed, {len(failures)} failed; {len(cov.gaps)} coverage gaps"
    )
    sys.exit(1 if failures or not cases or (strict and cov.gaps) else 0)


@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--url", help="run against a live service at this base URL")
@click.option("--key", help="an API key with decide, manage and sync scopes (with --url)")
@click.option("-v", "--verbose", is_flag=True, help="print every failure")
def test_fixtures(paths: tuple[Path, ...], url: str | None, key: str | None, verbose: bool) -> None:
    """Run policy fixture suites (default: policies/tests) against the policy or a service."""
    from authz.fixtures import LibraryTarget, run_paths
    from authz.policy import Policy

    settings = Settings.from_env()
    targets = list(paths) or [settings.policy_dir / "tests"]
    if url:
        from authz.fixtures_http import HttpTarget

        if not key:
            _fail("--url needs --key")
        target = HttpTarget(url, key or "")
        actions = target.actions()
    else:
        actions = Policy.load(settings.policy_dir).actions
        target = LibraryTarget(settings.policy_dir, settings.aspire_source)  # type: ignore[assignment]
    results = run_paths(targets, target, actions)
    total = sum(r.cases for r in results)
    failed = sum(len(r.failures) for r in results)
    for r in results:
        click.echo(f"{r.path}: {r.cases - len(r.failures)} passed, {len(r.failures)} failed")
        for f in r.failures if verbose or len(r.failures) <= 20 else r.failures[:20]:
            click.echo(f"  FAIL {f.case}: expected {f.expected}, got {f.got}")
    click.echo(f"{total - failed} passed, {failed} failed")
    sys.exit(1 if failed or not total else 0)
