"""`loupe audit` (what left the machine) and `loupe cloud` (presets, API key into the OS keyring)."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from loupe.backends.cloud import PRESETS
from loupe.cli.common import CliError, declare, examples, store_path
from loupe.cli.escalation import CLOUD_CONFIG_ENV, load_cloud_config
from loupe.core.secrets import get_api_key, set_api_key
from loupe.escalate.audit import audit_rows, totals
from loupe.store import Store

if TYPE_CHECKING:  # the ladder pulls in the whole engine; loaded only with --escalate
    pass


AUDIT_COLUMNS = (
    "id",
    "at",
    "job_id",
    "destination",
    "model",
    "status",
    "bytes_out",
    "bytes_in",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "image_sha256",
    "source_sha256",
)


def add_parsers(sub: Any) -> None:
    """Register `audit` and `cloud` on the `loupe` parser."""
    a = examples(
        sub.add_parser("audit", help="every request that left the machine: when, where, bytes, images, cost"),
        "loupe audit",
        "loupe audit --job 3 --out audit.csv",
        "loupe audit --db line1.db --json",
    )
    a.add_argument("--job", type=int, help="only this job's requests")
    a.add_argument("--out", help="write them to a .csv or .jsonl file")
    a.add_argument("--db", help="the results store (default: $LOUPE_DB, else loupe.db in the user data dir)")
    a.add_argument("--json", action="store_true", help="machine-readable output only")
    declare(a, outputs={"out": "file"}, store="read")

    c = examples(
        sub.add_parser("cloud", help="cloud presets; store a provider's API key in the OS keyring"),
        "loupe cloud presets",
        "loupe cloud key openai",
        "loupe cloud test --cloud-config cloud.toml",
    )
    declare(c)
    csub = c.add_subparsers(dest="action", required=True)
    json_help = "machine-readable output only"
    cp = examples(
        csub.add_parser("presets", help="the known providers and their endpoints"),
        "loupe cloud presets --json",
    )
    cp.add_argument("--json", action="store_true", help=json_help)
    declare(cp)
    ck = examples(
        csub.add_parser("key", help="read an API key from stdin (or a prompt) into the OS keyring"),
        "loupe cloud key gemini     # then paste the key; it goes to the OS keyring",
    )
    ck.add_argument("provider", metavar="PROVIDER", help=f"the provider the key is for ({', '.join(sorted(PRESETS))})")
    ck.add_argument("--json", action="store_true", help=json_help)
    declare(ck)
    ct = examples(
        csub.add_parser("test", help="send one short text request (no image) to the configured endpoint; audited"),
        "loupe cloud test --cloud-config cloud.toml",
    )
    ct.add_argument(
        "--cloud-config",
        metavar="FILE",
        help=f"cloud settings (default: ${CLOUD_CONFIG_ENV}); the cloud must be enabled there",
    )
    ct.add_argument(
        "--db", help="where the request is audited (default: $LOUPE_DB, else loupe.db in the user data dir)"
    )
    ct.add_argument("--json", action="store_true", help=json_help)
    declare(ct, store="write")


def run_hybrid(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run `audit` or `cloud`."""
    return _COMMANDS[args.command](args, out, err)


def _audit(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with Store(store_path(args)) as store:
        if args.job is not None:
            store.job(args.job)  # one line naming the store when there is no such job
        rows = audit_rows(store, job_id=args.job)
    if args.out:
        _write(Path(args.out), rows)
    if args.json:
        out.write(json.dumps({"totals": totals(rows), "requests": [] if args.out else rows}) + "\n")
        return 0
    for r in [] if args.out else rows:
        out.write(
            f"{r['at']}  {r['destination']}  {r.get('model', '')}  {r.get('status')}  "
            f"out {r.get('bytes_out', 0)} B  in {r.get('bytes_in', 0)} B  ${r.get('cost_usd', 0):.6f}\n"
        )
    t = totals(rows)
    print(
        f"{t['requests']} request(s), {t['bytes_out']} B out, {t['bytes_in']} B in, ~${t['cost_usd']:.6f}"
        + (f"; written to {args.out}" if args.out else ""),
        file=err,
    )
    return 0


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, AUDIT_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: " ".join(v) if isinstance(v, list) else v for k, v in r.items()})
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _cloud_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`loupe cloud test`: the desktop's Test connection, from the command line (exit 0 only when it answered)."""
    from loupe.escalate.connection import ConnectionCheck, check_connection

    cloud = load_cloud_config(args.cloud_config)
    if cloud is None:
        check = ConnectionCheck("refused", f"no cloud settings: pass --cloud-config FILE or set ${CLOUD_CONFIG_ENV}")
    else:
        env = PRESETS[cloud.preset].key_env
        with Store(store_path(args)) as store:
            check = check_connection(cloud, get_api_key(cloud.preset, env), store)
    if args.json:
        out.write(json.dumps({"verdict": check.verdict, "message": check.message}) + "\n")
    else:
        out.write(f"{check.verdict}: {check.message}\n")
    return 0 if check.ok else 1


def _cloud(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.action == "test":
        return _cloud_test(args, out, err)
    if args.action == "presets":
        table = {name: {"base_url": p.base_url, "model": p.model, "key_env": p.key_env} for name, p in PRESETS.items()}
        if args.json:
            out.write(json.dumps(table) + "\n")
        else:
            for name, p in table.items():
                out.write(f"{name:18} {p['base_url']}  {p['model'] or '-'}  {p['key_env'] or '(no key)'}\n")
        return 0
    if args.provider not in PRESETS:
        raise CliError(f"unknown provider {args.provider!r} (known: {', '.join(sorted(PRESETS))})")
    key = getpass.getpass(f"{args.provider} API key: ")
    set_api_key(args.provider, key.strip())
    print(f"stored the {args.provider} key in the OS keyring", file=err)
    if args.json:
        out.write(json.dumps({"stored": args.provider}) + "\n")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {"audit": _audit, "cloud": _cloud}
