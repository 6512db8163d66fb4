"""`loupe batch | review | export`: the command side of the results store."""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from loupe import taskfile
from loupe.cli.common import CliError, declare, examples, expand, model_files, open_backend, open_store, pick_task
from loupe.core.tasks import Task
from loupe.core.types import Status
from loupe.export import FORMATS, LOCAL_FILES, config_path, format_for, options_for, write_labelled, write_overlays
from loupe.store import ReviewQueue, Store, StoredResult

if TYPE_CHECKING:  # the batch runner pulls in the whole engine; loaded when a batch runs
    from loupe.batch import BatchSummary, ItemOutcome

SELECTIONS: dict[str, Callable[[Store, int], list[StoredResult]]] = {
    "all": lambda store, job: store.results(job),
    "review": lambda store, job: ReviewQueue(store).pending(job),
    "labelled": lambda store, job: ReviewQueue(store).labelled(job),
}


def add_parsers(sub: Any, model_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register batch, review and export on the `loupe` parser."""

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
        sp.add_argument("--json", action="store_true", help="machine-readable output only")

    b = examples(
        sub.add_parser("batch", help="analyze images or folders into the results store (resumable)"),
        "loupe batch photos/",
        "loupe batch photos/ --task-file my-task.yaml --db line1.db",
        "loupe batch --resume 3            # continue job 3 after Ctrl-C",
        "loupe batch photos/ --escalate --cloud-config cloud.toml",
        "loupe batch /archive/scans --ray                 # a Ray cluster in this process (all local cores)",
        "loupe batch /archive/scans --ray auto --actors 2 # the running Ray cluster, 2 model actors per node",
        "loupe batch /archive/scans --ray auto --out scans.parquet/   # Parquet from the workers; loupe import",
    )
    b.add_argument("inputs", nargs="*", metavar="IMAGE|DIR", help="image files, or folders of them (not with --resume)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--task", default=None, help="built-in task (default: defects)")
    g.add_argument("--task-file", help="a task file (.json, .yaml, .toml) with schema and instructions")
    model_args(b)
    b.add_argument("--max-tokens", type=int, help="override the task's max tokens")
    b.add_argument("--detail", help="image detail: low, high or a longest edge in pixels")
    b.add_argument("--resume", type=int, metavar="JOB", help="continue a stopped job with its own inputs and model")
    common(b)
    from loupe.cli.escalation import add_escalate_args

    add_escalate_args(b)
    add_ray_args(b)
    declare(b, outputs={"out": "dir"}, store="write")

    r = examples(
        sub.add_parser("review", help="results that need a person: list, accept, edit, reject"),
        "loupe review list",
        "loupe review accept 42",
        "loupe review edit 42 '{\"defects\": []}' --note 'no defect, glare'",
        "loupe review reject 43 --note 'wrong part'",
    )
    declare(r, store="read")
    rsub = r.add_subparsers(dest="action", required=True)
    rl = examples(
        rsub.add_parser("list", help="the review queue of a job (default: the latest), lowest confidence first"),
        "loupe review list",
        "loupe review list 3 --db line1.db --json",
    )
    rl.add_argument("job", nargs="?", type=int, help="a job id (default: the latest job)")
    common(rl)
    declare(rl, store="read")
    for action, text, example in (
        ("accept", "the answer is right", "loupe review accept 42"),
        (
            "edit",
            "store corrected data (checked against the task's schema)",
            "loupe review edit 42 @fixed.json --note 'two scratches, not one'",
        ),
        ("reject", "the answer is wrong", "loupe review reject 43 --note 'wrong part'"),
    ):
        ra = examples(rsub.add_parser(action, help=text), example)
        ra.add_argument("result", type=int, metavar="RESULT", help="a result id (from `loupe review list`)")
        if action == "edit":
            ra.add_argument("data", metavar="JSON|@FILE", help="the corrected data, or @file.json")
        ra.add_argument("--note", default="", help="why, kept with the decision (default: none)")
        common(ra)
        declare(ra, store="read")

    e = examples(
        sub.add_parser("export", help="write a job's results (default: the latest job) for other tools"),
        "loupe export --out results.csv",
        "loupe export 3 --out results.parquet --select review",
        "loupe export --overlays boxes/",
        "loupe export --labelled --out labelled/",
    )
    e.add_argument("job", nargs="?", type=int, help="a job id (default: the latest job)")
    e.add_argument("--out", help="output file (or folder with --labelled)")
    e.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="default: from --out's name (.jsonl, .csv, .parquet, .coco.json, .labelstudio.json); else an error",
    )
    e.add_argument(
        "--image-root",
        metavar="DIR",
        help="COCO file_name and Label Studio paths are relative to DIR (default: the images' common folder)",
    )
    e.add_argument(
        "--image-url-prefix",
        metavar="PREFIX",
        help=f"Label Studio image URLs: PREFIX + path under --image-root (default {LOCAL_FILES!r}: local files)",
    )
    e.add_argument("--overlays", metavar="DIR", help="also write PNGs with the boxes drawn, label and confidence")
    e.add_argument("--select", choices=sorted(SELECTIONS), default="all", help="which results (default: all)")
    e.add_argument(
        "--labelled",
        action="store_true",
        help="accepted and edited results (of JOB, else of every job) as images/ + labels.jsonl in --out",
    )
    common(e)
    declare(e, outputs={"out": lambda a: "dir" if a.labelled else "file", "overlays": "dir"}, store="read")


def add_ray_args(b: argparse.ArgumentParser) -> None:
    """`--ray [ADDRESS]` and its options (the cluster side of `loupe batch`, in loupe.cluster)."""
    r = b.add_argument_group("Ray cluster (pip install 'loupe[ray]')")
    r.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run over Ray: no ADDRESS starts a local cluster in this process; auto, HOST:PORT or ray://HOST:PORT "
        "joins a running one (the same job, resume and store as without --ray)",
    )
    r.add_argument("--actors", type=int, metavar="N", help="model actors per node (default: from its cores and memory)")
    r.add_argument("--actor-threads", type=int, metavar="N", help="threads per actor (default: min(4, cores))")
    r.add_argument(
        "--models-dir",
        metavar="DIR",
        help="where workers find the model (a shared folder; default: each node's user models dir)",
    )
    r.add_argument(
        "--out",
        metavar="DIR",
        help="with --ray: workers write the results as Parquet in DIR (for very large jobs), not into the store; "
        "bring them in with `loupe import DIR`; a rerun into DIR skips what is there",
    )


def run_store(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run one of the store commands."""
    return _COMMANDS[args.command](args, out, err)


# -- batch ----------------------------------------------------------------------------------------


def _start(store: Store, args: argparse.Namespace) -> tuple[int, argparse.Namespace]:
    """The job to run (resumed or new) and the model arguments to load it with."""
    from loupe.batch import open_job

    if args.resume is not None:
        given = (
            args.inputs,
            args.task,
            args.task_file,
            args.model,
            args.model_path,
            args.mmproj,
            args.max_tokens,
            args.detail,
        )
        if any(given) or args.escalate or args.cloud_config:
            raise CliError("--resume JOB runs the job's own inputs, task and model; give only --db, --threads, --json")
        job = store.job(args.resume)
        launch = job.launch
        if "inputs" not in launch:
            raise CliError(f"job {job.id} was not started by `loupe batch`; resume it where it was started")
        store.add_items(job.id, [os.path.abspath(p) for p in expand(launch["inputs"])])
        return job.id, argparse.Namespace(
            model=launch.get("model"),
            model_path=launch.get("model_path"),
            mmproj=launch.get("mmproj"),
            threads=args.threads,
            escalate=launch.get("escalate", False),
            cloud_config=launch.get("cloud_config"),
        )
    new = _describe(args)
    job, _ = open_job(
        store,
        inputs=new.inputs,
        paths=new.paths,
        task=new.task,
        model=new.model,
        settings=new.settings,
        launch=new.launch,
    )
    return job.id, args


@dataclass(frozen=True)
class NewJob:
    """A job as the command line describes it, before any store sees it (its key is `loupe.batch.job_key`)."""

    inputs: list[str]
    paths: list[str]
    task: Task
    model: str
    settings: dict[str, Any]
    launch: dict[str, Any]


def _describe(args: argparse.Namespace) -> NewJob:
    """Inputs, task, model and settings of a new `loupe batch` (every path found, the model's files known)."""
    if not args.inputs:
        raise CliError("give images or folders to analyze, or --resume JOB")
    args.task = args.task or "defects"
    job = pick_task(args)
    inputs = [os.path.abspath(i) for i in args.inputs]
    paths = [os.path.abspath(p) for p in expand(inputs)]
    if not paths:
        raise CliError("no images found in " + " ".join(args.inputs))
    name, files = model_files(args)
    from loupe.cli.escalation import escalation_settings

    settings = {
        "backend": "llama_cpp",
        "model_files": [[f.name, f.stat().st_size] for f in files],
        **escalation_settings(args, job),
    }
    launch = {
        "inputs": inputs,
        "model": args.model,
        "model_path": str(files[0]) if args.model_path else None,
        "mmproj": str(files[1]) if args.model_path else None,
    }
    if args.escalate:
        launch.update(escalate=True, cloud_config=args.cloud_config and os.path.abspath(args.cloud_config))
    return NewJob(inputs, paths, job.task, name, settings, launch)


@contextmanager
def _progress(
    store: Store, job_id: int, err: TextIO, bar_on: bool, quiet: bool
) -> Iterator[Callable[[ItemOutcome], None]]:
    """A per-item callback: a rich bar (rate + ETA) on a terminal, and a line per failed image unless quiet."""

    def report(outcome: ItemOutcome, say: Callable[[str], None]) -> None:
        if not quiet and outcome.result.status is Status.ERROR:
            say(f"error: {outcome.result.error}")

    if not bar_on:
        yield lambda o: report(o, lambda line: print(line, file=err))
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} img/s" if task.speed else "… img/s")

    counts = store.counts(job_id)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=err)) as bar:
        tid = bar.add_task(f"job {job_id}", total=counts["items"], completed=counts["done"])

        def advance(outcome: ItemOutcome) -> None:
            report(outcome, bar.console.print)
            bar.advance(tid)

        yield advance


def cmd_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Analyze into the store, one committed result per image; re-run or --resume to continue."""
    from loupe.api import Engine
    from loupe.batch import BatchRunner, LazyEngine, stop_on_sigint
    from loupe.core.prefetch import Prefetcher

    if args.ray is not None:
        return _batch_on_ray(args, out, err)
    if args.out or args.actors or args.actor_threads or args.models_dir:
        raise CliError("--out, --actors, --actor-threads and --models-dir go with --ray")
    with open_store(args) as store:
        job_id, model_ns = _start(store, args)

        def load() -> Engine:
            backend, name = open_backend(model_ns, err)
            return Engine(backend, model=name)

        lazy = LazyEngine(load)
        analyze: Any = lazy.analyze
        ladder = None
        if model_ns.escalate:
            from loupe.cli.escalation import escalator

            stored = taskfile.parse(store.job(job_id).task)  # the job's task as stored, its tables parsed once here
            ladder = escalator(model_ns, stored, lazy.get, err, store=store, job_id=job_id)
            analyze = lambda path, task: ladder([path], task)  # noqa: E731
        stop = threading.Event()
        prefetch = None if ladder is not None else Prefetcher()  # the ladder reads its images itself

        def notice() -> None:
            print("stopping after the current image (Ctrl-C again to stop now)", file=err)

        try:
            with (
                stop_on_sigint(stop, notice),
                _progress(store, job_id, err, not args.json and err.isatty(), args.json) as on_item,
            ):
                summary = BatchRunner(store, analyze, prefetch=prefetch).run(job_id, stop=stop, on_item=on_item)
        finally:
            if prefetch is not None:
                prefetch.close()
            if ladder is not None:
                ladder.close()
            lazy.close()
        _report(summary, store, args, out, err)
    if summary.stopped:
        return 130
    return 1 if summary.errors else 0


def _batch_on_ray(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`loupe batch --ray`: the same job (key, resume, store) with the items answered by model actors on a Ray
    cluster, the store written only here; or, with --out, Parquet written by the workers."""
    from loupe.api import Engine
    from loupe.batch import LazyEngine, stop_on_sigint
    from loupe.cluster.driver import ClusterOptions, run_cluster_job
    from loupe.cluster.modelref import model_ref
    from loupe.cluster.plan import check_counts
    from loupe.cluster.session import connected

    check_counts(args.actors, args.actor_threads)  # before a job is recorded or a cluster joined
    address = args.ray or None
    options = ClusterOptions(actors=args.actors, threads=args.actor_threads, models_dir=args.models_dir)
    if args.out:
        return _ray_to_dir(args, address, options, out, err)
    with open_store(args) as store:
        job_id, model_ns = _start(store, args)
        name, files = model_files(model_ns)
        ref = model_ref(name, files, catalog=not model_ns.model_path)

        def load() -> Engine:  # the driver's own model: only for a later local rung of the ladder, if one climbs
            backend, loaded = open_backend(model_ns, err)
            return Engine(backend, model=loaded)

        lazy = LazyEngine(load)
        ladder = None
        stop = threading.Event()

        def notice() -> None:
            print("stopping after the items in progress (Ctrl-C again to stop now)", file=err)

        try:
            if model_ns.escalate:
                from loupe.cli.escalation import escalator
                from loupe.cluster.climb import DriverLadder

                stored = taskfile.parse(store.job(job_id).task)
                ladder = DriverLadder(escalator(model_ns, stored, lazy.get, err, store=store, job_id=job_id))
            with (
                connected(address),
                stop_on_sigint(stop, notice),
                _progress(store, job_id, err, not args.json and err.isatty(), args.json) as on_item,
            ):
                summary = run_cluster_job(store, job_id, ref, options, escalation=ladder, on_item=on_item, stop=stop)
        finally:
            if ladder is not None:
                ladder.close()
            lazy.close()
        if args.json:
            out.write(json.dumps(summary.to_dict()) + "\n")
        else:
            _report(summary.batch, store, args, out, err)
            out.write(
                f"ray: {summary.sent} sent to {summary.actors} actors x {summary.threads} threads, "
                f"{summary.cached} answered from the store, {summary.wall_s:.1f} s\n"
            )
    if summary.batch.stopped:
        return 130
    return 1 if summary.batch.errors else 0


def _ray_to_dir(args: argparse.Namespace, address: str | None, options: Any, out: TextIO, err: TextIO) -> int:
    """`loupe batch --ray --out DIR`: workers write Parquet rows, this process only the job file."""
    from loupe.batch import job_key
    from loupe.cluster.modelref import model_ref
    from loupe.cluster.out import run_to_dir
    from loupe.cluster.session import connected
    from loupe.store.records import task_to_dict

    if args.resume is not None or args.escalate or args.db:
        raise CliError(
            "--out DIR writes Parquet, not a store: it takes no --resume, --escalate or --db (rerun the "
            "same command to continue; `loupe import DIR` brings the rows into a store)"
        )
    new = _describe(args)
    name, files = model_files(args)
    job = {
        "key": job_key(new.inputs, new.task, new.model, new.settings),
        "task": task_to_dict(new.task),
        "model": new.model,
        "settings": new.settings,
        "launch": new.launch,
        "inputs": new.inputs,
        "paths": new.paths,
    }
    with connected(address):
        summary = run_to_dir(Path(args.out), job, model_ref(name, files, catalog=not args.model_path), options)
    if args.json:
        out.write(json.dumps(summary.to_dict()) + "\n")
    else:
        out.write(
            f"{summary.items} images: {summary.written} written now, {summary.skipped} already in {args.out}; "
            f"bring them into a store with `loupe import {args.out}`\n"
        )
    return 0


def _report(s: BatchSummary, store: Store, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    if args.json:
        out.write(json.dumps(s.to_dict()) + "\n")
    else:
        out.write(
            f"job {s.job}: {s.items} images, {s.done} done ({s.cached} from the store), {s.errors} errors, "
            f"{s.review} to review; results in {store.path}\n"
        )
    if s.stopped:
        print(f"stopped; continue with `loupe batch --resume {s.job}` (or run the same command again)", file=err)


# -- review ---------------------------------------------------------------------------------------
def _queue_line(s: StoredResult) -> dict[str, Any]:
    low = min(s.result.confidence.items(), key=lambda kv: kv[1], default=(None, None))
    return {
        "result": s.id,
        "job": s.job_id,
        "path": s.path,
        "status": s.result.status.value,
        "min_confidence": low[1],
        "lowest": low[0],
        "error": s.result.error,
        "data": s.result.data,
    }


def cmd_review(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List the review queue, or record a decision on one result."""
    with open_store(args) as store:
        queue = ReviewQueue(store)
        if args.action == "list":
            if args.job is not None:
                store.job(args.job)  # one line naming the store when there is no such job
            for s in queue.pending(args.job):
                line = _queue_line(s)
                if args.json:
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                else:
                    conf = "  -  " if line["min_confidence"] is None else f"{line['min_confidence']:.2f}"
                    why = line["error"] or f"lowest {line['lowest']}"
                    out.write(f"{s.id:>6}  {conf}  {line['status']:<9} {s.path}  ({why})\n")
            return 0
        if args.action == "edit":
            text = Path(args.data[1:]).read_text(encoding="utf-8") if args.data.startswith("@") else args.data
            review = queue.edit_json(args.result, text, note=args.note)
        else:
            review = getattr(queue, args.action)(args.result, note=args.note)
        if args.json:
            out.write(json.dumps({"result": review.result_id, "review": review.id, "decision": review.decision}) + "\n")
        else:
            out.write(f"result {review.result_id}: {review.decision} recorded\n")
    return 0


# -- export ---------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write results in a format other tools read, overlay images, or the labelled set."""
    report: dict[str, Any] = {}
    with open_store(args) as store:
        if args.labelled:
            if not args.out or args.format or args.overlays or args.select != "all":
                raise CliError("--labelled takes --out DIR only (it writes images/, labels.jsonl and tasks.json)")
            written = write_labelled(store, ReviewQueue(store).labelled(args.job), Path(args.out))
            report.update(labelled=written.written, out=args.out, skipped=list(written.skipped))
        else:
            if not args.out and not args.overlays:
                raise CliError("give --out PATH (and --format), --overlays DIR, or both")
            fmt = format_for(args.out, args.format) if args.out else None
            job = store.job(args.job) if args.job is not None else store.latest_job()
            results = SELECTIONS[args.select](store, job.id)
            report["job"] = job.id
            if args.out and fmt:
                opts = options_for(store, [job.id], results, image_root=args.image_root, prefix=args.image_url_prefix)
                report.update(format=fmt, out=args.out, written=FORMATS[fmt](results, Path(args.out), opts))
                if fmt in ("coco", "labelstudio"):
                    report["image_root"] = str(opts.image_root)
                if fmt == "labelstudio":
                    report.update(image_url_prefix=opts.image_url_prefix, config=str(config_path(Path(args.out))))
            if args.overlays:
                written = write_overlays(results, Path(args.overlays))
                report.update(overlays=written.written, overlays_dir=args.overlays, skipped=list(written.skipped))
    if args.json:
        out.write(json.dumps(report) + "\n")
    else:
        out.write(", ".join(f"{k} {v}" for k, v in report.items() if k != "skipped") + "\n")
        for problem in report.get("skipped", []):
            print(f"skipped: {problem}", file=err)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "batch": cmd_batch,
    "review": cmd_review,
    "export": cmd_export,
}
