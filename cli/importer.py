"""`loupe import DIR`: the command side of bringing a cluster run's --out folder into a results store."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from loupe.cli.common import declare, examples, open_store


def add_parsers(sub: Any) -> None:
    """Register `import` on the `loupe` parser."""
    p = examples(
        sub.add_parser(
            "import",
            help="store the results a `loupe batch --ray --out DIR` run wrote (each item once; safe to repeat)",
        ),
        "loupe import /results/run1",
        "loupe import /results/run1 --db /results/loupe.db --json",
    )
    p.add_argument("dir", metavar="DIR", help="the --out folder of the run (Parquet row files and _loupe_job.json)")
    p.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    p.add_argument("--json", action="store_true", help="machine-readable output only")
    declare(p, store="write")


@contextmanager
def _progress(total: int, err: TextIO, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich bar over the rows on a terminal; nothing otherwise."""
    if not enabled or not err.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("rows"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=err), transient=True) as bar:
        tid = bar.add_task("rows", total=total)
        yield lambda n: bar.advance(tid, n)


def cmd_import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Import an --out folder; exit 1 when the job holds error results (as `loupe batch`)."""
    from loupe.cluster.importer import check_rows, import_dir, read_job_file, row_files

    read_job_file(args.dir)  # a wrong folder or row file fails in a line before the store is created
    total = check_rows(row_files(args.dir))
    with open_store(args) as store, _progress(total, err, not args.json) as on_rows:
        s = import_dir(store, args.dir, on_rows=on_rows)
        if args.json:
            out.write(json.dumps(s.to_dict()) + "\n")
        else:
            unknown = f", {s.unknown} rows not in the job" if s.unknown else ""
            out.write(
                f"job {s.job}: {s.items} images, {s.done} done; {s.imported} imported, {s.skipped} skipped (stored "
                f"already){unknown}, {s.errors} errors, {s.review} to review; results in {store.path}\n"
            )
        if s.done < s.items:
            print(
                f"{s.items - s.done} images have no result yet; run them here with `loupe batch --resume {s.job}`",
                file=err,
            )
    return 1 if s.errors else 0


def run_import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run `loupe import`."""
    return cmd_import(args, out, err)
