"""`loupe search | index`: find stored results again (similar images, near-duplicates, fields, text)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from loupe.cli.common import CliError, declare, examples, model_args, open_backend, open_store


def add_parsers(sub: Any) -> None:
    """Register search and index on the `loupe` parser."""
    s = examples(
        sub.add_parser("search", help="find stored results: similar images, near-duplicates, fields, text"),
        "loupe search --like photo.jpg                  # most alike first (the query itself first)",
        "loupe search --like 42 --limit 5               # like result 42",
        "loupe search --dupes --max-distance 6          # groups of near-duplicate images",
        "loupe search --where '/defects/*/label = crack AND /defects/*/severity >= 4'",
        "loupe search --where '/total > 100' --text 'acme' --status ok --since 2025-06-01 --json",
        "loupe search --dupes --out dupes.csv           # the rows found, exported (any `loupe export` format)",
    )
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--like", metavar="IMAGE|RESULT_ID", help="results whose image looks most like this one")
    mode.add_argument("--dupes", action="store_true", help="groups of near-duplicate images (perceptual hash)")
    s.add_argument(
        "--where",
        metavar="EXPR",
        help="POINTER OP VALUE [AND ...]; OP one of = != < <= > >= ~ (substring); * matches any key or index",
    )
    s.add_argument("--text", metavar="Q", help="full-text search over the answers' text (every word must appear)")
    s.add_argument(
        "--status",
        action="append",
        choices=["ok", "refused", "truncated", "invalid", "error"],
        help="only results with this status (repeat for several)",
    )
    s.add_argument("--job", type=int, help="only this job's results")
    s.add_argument("--min-confidence", type=float, metavar="P", help="only results whose lowest confidence >= P")
    s.add_argument("--max-confidence", type=float, metavar="P", help="only results whose lowest confidence <= P")
    s.add_argument("--since", metavar="DATE", help="only results stored from DATE on (ISO, UTC: 2025-06-01)")
    s.add_argument("--until", metavar="DATE", help="only results stored until DATE, that day included")
    s.add_argument("--max-distance", type=int, default=None, help="--dupes: bits apart at most (default 8 of 64)")
    s.add_argument("--limit", type=int, default=None, help="at most N rows (default: 20 for --like, else all)")
    s.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    s.add_argument("--json", action="store_true", help="one JSON object per row")
    s.add_argument(
        "--out",
        metavar="FILE",
        help="also export the results found, best first (.jsonl, .csv, .parquet, .coco.json, .labelstudio.json)",
    )
    s.add_argument("--format", help="the export format when --out's name does not say it")
    s.add_argument("--image-root", metavar="DIR", help="--out COCO / Label Studio: image paths relative to DIR")
    declare(s, store="read", outputs={"out": "file"})

    i = examples(
        sub.add_parser("index", help="back-fill search data (perceptual hashes, text) for older results"),
        "loupe index",
        "loupe index --db line1.db --json",
        "loupe index --vectors --model smolvlm-256m     # image vectors for results analyzed before they were kept",
    )
    i.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    i.add_argument("--json", action="store_true", help="machine-readable output only")
    i.add_argument(
        "--vectors",
        action="store_true",
        help="also encode the images of results stored without image vectors, with the model given (for --like)",
    )
    model_args(i)
    declare(i, store="read")


def _export(store: Any, hits: Any, args: argparse.Namespace, err: TextIO) -> None:
    """Write the results the search found (each once, best first) with `loupe export`'s writers."""
    from pathlib import Path

    from loupe.export import FORMATS, format_for, options_for

    fmt = format_for(args.out, args.format)
    ids = list(dict.fromkeys(h.result_id for h in hits))
    results = [store.result(i) for i in ids]
    jobs = sorted({r.job_id for r in results})
    opts = options_for(store, jobs, results, image_root=args.image_root)
    written = FORMATS[fmt](results, Path(args.out), opts)
    print(f"exported {written} result(s) as {fmt} to {args.out}", file=err)


def _vectors(store: Any, args: argparse.Namespace, err: TextIO) -> tuple[int, int]:
    """`index --vectors`: load the model the options name and encode the images of results without vectors."""
    from loupe.api import Engine
    from loupe.search import backfill_vectors

    backend, name = open_backend(args, err)
    with Engine(backend, model=name) as engine:
        return backfill_vectors(store, engine)


def run_search(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run `search` or `index`."""
    return cmd_index(args, out, err) if args.command == "index" else cmd_search(args, out, err)


def cmd_search(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the rows a search finds, best first."""
    from loupe.search import Filters, dupes, like, text, where
    from loupe.search.find import DEFAULT_LIMIT, DEFAULT_MAX_DISTANCE

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit {args.limit}: give 1 or more")
    filters = Filters(
        where=args.where or "",
        status=tuple(args.status or ()),
        min_confidence=args.min_confidence,
        max_confidence=args.max_confidence,
        job=args.job,
        since=args.since,
        until=args.until,
    )
    if args.max_distance is not None and not args.dupes:
        raise CliError("--max-distance goes with --dupes")
    with open_store(args) as store:
        if args.like:
            hits = like(store, args.like, args.limit or DEFAULT_LIMIT, filters=filters)
        elif args.dupes:
            md = DEFAULT_MAX_DISTANCE if args.max_distance is None else args.max_distance
            hits = dupes(store, md, filters=filters, limit=args.limit)
        elif args.text:
            hits = text(store, args.text, filters=filters, limit=args.limit)
        elif not filters.empty:
            hits = where(store, filters=filters, limit=args.limit)
        else:
            raise CliError("say what to find: --like IMAGE|RESULT_ID, --dupes, --where EXPR or --text Q")
        if (args.like or args.dupes) and args.text:  # text narrows the others: rows whose result has the words
            keep = {h.result_id for h in text(store, args.text, filters=filters)}
            hits[:] = [h for h in hits if h.result_id in keep]
        if args.out:
            _export(store, hits, args, err)
    if hits.note:
        print(f"note: {hits.note}", file=err)
    if args.json:
        for h in hits:
            out.write(json.dumps(h.to_dict(), ensure_ascii=False) + "\n")
        return 0
    if not hits:
        print("no results", file=err)
        return 0
    head = f"{'result':>7} {'job':>5}  {'status':<9} {'group':>5} {hits.measure or '':>8}  path"
    out.write(head.rstrip() + "\n")
    for h in hits:
        measure = h.score if h.score is not None else h.distance
        m = "" if measure is None else (f"{measure:.4f}" if isinstance(measure, float) else str(measure))
        group = "" if h.group is None else str(h.group)
        out.write(f"{h.result_id:>7} {h.job_id:>5}  {h.status:<9} {group:>5} {m:>8}  {h.path}\n")
    return 0


def cmd_index(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Back-fill perceptual hashes and text for results stored before search; a progress bar on a terminal."""
    from loupe.search import backfill

    with open_store(args) as store:
        if args.json or not err.isatty():
            summary = backfill(store)
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=Console(file=err), transient=True) as bar:
                tid = bar.add_task("index", total=None)
                summary = backfill(store, lambda done, total: bar.update(tid, completed=done, total=total))
        vectors = _vectors(store, args, err) if args.vectors else None
    if args.json:
        out.write(json.dumps({**summary.to_dict(), **({"vectors_added": vectors[0]} if vectors else {})}) + "\n")
        return 0
    if vectors is not None:
        print(
            f"image vectors for {vectors[0]} result(s)" + (f"; {vectors[1]} gave none" if vectors[1] else ""), file=out
        )
    print(
        f"indexed {summary.indexed} result(s) of {summary.results}"
        + (f"; {summary.unreadable} image file(s) could not be read (moved?)" if summary.unreadable else ""),
        file=out,
    )
    print(
        f"{summary.vectors} image vector(s) in the store: they come from analyses with a backend that gives them;"
        " `loupe index --vectors --model NAME` encodes the images of older results",
        file=out,
    )
    return 0
