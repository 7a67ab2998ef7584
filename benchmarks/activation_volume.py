"""How many activation values one nightly run changes, on a store kept by the bench.

    .venv/bin/python -m benchmarks.activation_volume data/bench-keep/1000000

Copies the kept store to a temporary folder (as `benchmarks.nightly_profile` does), renders
`marts.customer_scores` in the canonical strings activation compares (`activation.fields.sql_render`),
runs the nightly selection on the kept appended day, renders them again and prints, as JSON:
per field the values that changed, the customers with a changed value that triggers a send
(what a live sync would write back), and the next purchase dates withdrawn (set before, null
after: cleared upstream) and newly set. The README's activation section quotes these figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _canonical(conn, table: str) -> None:
    from clv_platform.activation.fields import FIELDS, sql_render

    columns = ", ".join(f'{sql_render(f, f"cast(s.{f.column} as {f.column_type})")} as "{f.name}"' for f in FIELDS)
    conn.execute(f"create or replace temp table {table} as select s.customer_id, {columns} "
                 "from marts.customer_scores as s")


def main(argv: list[str] | None = None) -> int:
    from benchmarks import bench, nightly
    from benchmarks.nightly_profile import _copy_store, _repoint_models
    from clv_platform.activation.fields import FIELDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", type=Path, help="a --keep-dir folder of one store size")
    args = parser.parse_args(argv)
    selection, _ = nightly.run_selection("nightly")
    with tempfile.TemporaryDirectory(prefix="clv-activation-volume-") as tmp:
        workdir = Path(tmp)
        _copy_store(args.kept, workdir)
        memory_limit = bench.default_memory_limit()
        conn = nightly._open(workdir, 2, memory_limit)
        try:
            _repoint_models(conn, workdir)
            _canonical(conn, "_before")
            started = time.perf_counter()
            nightly._dagster_run(conn, workdir, "nightly", selection, None, memory_limit)
            seconds = time.perf_counter() - started
            _canonical(conn, "_after")
            changed = ", ".join(f'count(*) filter (where b."{f.name}" is distinct from a."{f.name}")' for f in FIELDS)
            triggers = " or ".join(f'b."{f.name}" is distinct from a."{f.name}"' for f in FIELDS if f.trigger)
            date = '"clv_next_purchase_date"'
            row = conn.execute(f"""
                select count(*), count(*) filter (where {triggers}),
                       count(*) filter (where b.{date} is not null), count(*) filter (where a.{date} is not null),
                       count(*) filter (where b.{date} is not null and a.{date} is null),
                       count(*) filter (where b.{date} is null and a.{date} is not null), {changed}
                from _before as b join _after as a using (customer_id)""").fetchone()
        finally:
            conn.close()
    names = ["customers", "customers_with_a_change_to_send", "dated_before", "dated_after", "dates_withdrawn",
             "dates_new"]
    result = dict(zip(names, row))
    result["changed_values"] = {f.name: value for f, value in zip(FIELDS, row[len(names):])}
    result["nightly_seconds"] = round(seconds, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
