"""Print the query plans of the list queries on the bench worlds (`python -m bench.plans`).

Captures the SQL the lister really sends, then asks the engine for its plan: EXPLAIN QUERY
PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import event

from authz.config import Settings
from authz.runtime import Runtime
from bench.common import world


def captured(rt: Runtime, call: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "role_types" not in statement:
            seen.append((statement, params))

    event.listen(rt.db.read_engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(rt.db.read_engine, "before_cursor_execute", record)
    return seen


def explain(rt: Runtime, statement: str, params: Any) -> list[str]:
    raw = rt.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if rt.db.is_sqlite:
            cur.execute("EXPLAIN QUERY PLAN " + statement, params)
            return [f"{'  ' * (row[1] > 0)}{row[3]}" for row in cur.fetchall()]
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
        return [row[0] for row in cur.fetchall()]
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contracts", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    for engine in args.engines.split(","):
        url = world(engine, args.contracts, args.accounts)
        with Runtime.open(Settings(database_url=url)) as rt:
            first = rt.lister.contracts("user-0200", "view", None, 100)
            calls = {
                "typical user's contracts (user-0001)": lambda: rt.lister.contracts("user-0001"),
                "fleet lessee, second page of 100 (user-0200)": lambda: rt.lister.contracts(
                    "user-0200",
                    "view",
                    None,
                    100,
                    first.next_cursor,  # noqa: B023 (called at once)
                ),
                "eligible accounts of site summit, q=gran": lambda: rt.lister.eligible_accounts(
                    "summit", "gran", 20
                ),
            }
            for title, call in calls.items():
                print(f"\n=== {engine}: {title}")
                for statement, params in captured(rt, call):
                    print("-- " + " ".join(statement.split())[:160] + " ...")
                    for line in explain(rt, statement, params):
                        print("   " + line)


if __name__ == "__main__":
    main()
