"""The evaluation report: report.json (the numbers), plots/*.png, and one self-contained report.html."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.export.rows import atomic_open

DPI = 80
MAX_FIELDS_PLOTTED = 8


def _figure(width: float = 5.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def reliability_png(system: dict[str, Any]) -> bytes:
    """Accuracy against mean confidence per bin, one line per field; the diagonal is perfect calibration."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect")
    for name, cal in list(system["calibration"].items())[:MAX_FIELDS_PLOTTED]:
        pts = [(b["mean_confidence"], b["accuracy"]) for b in cal["bins"] if b["count"]]
        if pts:
            ece = cal["ece"]
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{name} (ECE {ece:.2f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence", ylabel="accuracy", title="Reliability")
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def coverage_png(system: dict[str, Any]) -> bytes:
    """Accuracy of the accepted answers against the share accepted, as the threshold moves down."""
    fig, ax = _figure()
    for name, cal in list(system["calibration"].items())[:MAX_FIELDS_PLOTTED]:
        pts = [(p["coverage"], p["accuracy"]) for p in cal["coverage"]]
        if pts:
            ax.step(*zip(*pts, strict=True), where="post", label=name)
    if "fit" in system:
        ax.axhline(system["fit"]["target"], color="#c62828", linestyle=":", linewidth=1, label="target")
    ax.set(
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        xlabel="coverage (share accepted)",
        ylabel="accuracy of accepted",
        title="Accuracy vs coverage",
    )
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def cost_png(systems: list[dict[str, Any]]) -> bytes:
    """Mean latency per image of each system and of each ladder step (bars), with cost in the labels."""
    names, values, notes = [], [], []
    for s in systems:
        names.append(s["system"])
        values.append(s["latency_ms"]["mean"] or 0.0)
        notes.append(f"${s['cost_per_image_usd']:.4f}/img")
        for step in s["steps"]:
            names.append(f"  {step['step']} ({step['share_of_images']:.0%} of images)")
            values.append(step["mean_ms"] or 0.0)
            notes.append(f"${step['cost_per_image_usd']:.4f}/img")
    fig, ax = _figure(6.0, 0.5 + 0.45 * max(len(names), 2))
    bars = ax.barh(range(len(names)), values, color="#1976d2")
    ax.bar_label(bars, labels=notes, fontsize=7, padding=2)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="mean ms per image (cached images: as first measured)", title="Latency and cost")
    return _png(fig)


def confusion_png(name: str, matrix: dict[str, dict[str, int]]) -> bytes:
    """Counts of labelled value (rows) against predicted value (columns)."""
    truth = sorted(matrix)
    pred = sorted({p for row in matrix.values() for p in row} | set(truth))
    fig, ax = _figure(1.6 + 0.55 * len(pred), 1.2 + 0.45 * len(truth))
    grid = [[matrix[t].get(p, 0) for p in pred] for t in truth]
    ax.imshow(grid, cmap="Blues")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(pred)), pred, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(truth)), truth, fontsize=8)
    ax.set(xlabel="predicted", ylabel="labelled", title=name)
    return _png(fig)


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower() or "x"


def plots(doc: dict[str, Any]) -> dict[str, bytes]:
    """Every plot of the report, by file name."""
    out = {"cost.png": cost_png(doc["systems"])}
    for i, s in enumerate(doc["systems"]):
        tag = f"{i + 1}-{_slug(s['system'])}"
        out[f"{tag}-reliability.png"] = reliability_png(s)
        out[f"{tag}-coverage.png"] = coverage_png(s)
        for f in s["fields"]:
            if f.get("confusion"):
                out[f"{tag}-confusion-{_slug(f['field'])}.png"] = confusion_png(f["field"], f["confusion"])
    return out


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _img(pngs: dict[str, bytes], name: str) -> str:
    data = base64.b64encode(pngs[name]).decode()
    return f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>'


def _tokens(step: dict[str, Any]) -> str:
    t = step.get("tokens_per_run") or {}
    if t.get("prompt") is None:
        return "–"
    return f"{t['prompt'] + (t.get('image') or 0):.0f} / {t['completion']:.0f}"


def _system_html(i: int, s: dict[str, Any], pngs: dict[str, bytes]) -> str:
    tag = f"{i + 1}-{_slug(s['system'])}"
    e = html.escape
    tokens = ", ".join(f"{k} {_num(v, '{:.0f}')}" for k, v in s["tokens_per_image"].items())
    parts = [
        f"<a name='system-{i + 1}'></a><h2>{e(s['system'])}</h2>",
        f"<p>{s['images']} images ({s['cached']} answered from the store), statuses "
        f"{e(', '.join(f'{k} {v}' for k, v in s['statuses'].items()))}; whole-record accuracy "
        f"<b>{_num(s['record_accuracy'])}</b>; latency mean {_num(s['latency_ms']['mean'], '{:.0f}')} ms, "
        f"p95 {_num(s['latency_ms']['p95'], '{:.0f}')} ms; tokens/image "
        f"{e(tokens)}; "
        f"cost ${s['cost_per_image_usd']:.4f}/image</p>",
    ]
    rows = []
    for f in s["fields"]:
        cal = s["calibration"].get(f["field"], {})
        rows.append(
            [
                e(f["field"]),
                f["kind"],
                str(f["n"]),
                _num(f["accuracy"]),
                _num(f["mae"]),
                _num(f["mean_rel_error"]),
                _num(f["precision"]),
                _num(f["recall"]),
                _num(f["mean_iou"]),
                _num(cal.get("ece")),
            ]
        )
    parts.append(
        _table(["field", "kind", "n", "accuracy", "MAE", "rel. error", "precision", "recall", "mean IoU", "ECE"], rows)
    )
    if s["steps"]:
        parts.append(
            "<h3>Ladder steps</h3>"
            + _table(
                [
                    "step",
                    "model",
                    "runs",
                    "accepted",
                    "escalated",
                    "skipped",
                    "mean ms",
                    "p95 ms",
                    "tokens in/out",
                    "$/image",
                ],
                [
                    [
                        e(st["step"]),
                        e(st["model"]),
                        str(st["runs"]),
                        str(st["accepted"]),
                        str(st["escalated"]),
                        str(st["skipped"]),
                        _num(st["mean_ms"], "{:.0f}"),
                        _num(st["p95_ms"], "{:.0f}"),
                        _tokens(st),
                        f"{st['cost_per_image_usd']:.4f}",
                    ]
                    for st in s["steps"]
                ],
            )
        )
    if "fit" in s:
        fit = s["fit"]
        climb = (
            ""
            if fit.get("escalated_ms_per_image") is None
            else (
                f"; the next rung adds ~{fit['escalated_ms_per_image']:.0f} ms"
                f" and ${fit['escalated_usd_per_image'] or 0:.4f} per image on average"
            )
        )
        parts.append(
            f"<h3>Thresholds for {fit['target']:.0%} accuracy</h3><p>escalation rate "
            f"<b>{fit['escalation_rate']:.0%}</b>; whole-record accuracy of the rest "
            f"{_num(fit['accepted_record_accuracy'])}{climb}</p>"
        )
        parts.append(
            _table(
                ["field", "threshold", "reached", "coverage", "accuracy", "n"],
                [
                    [
                        e(x["field"]),
                        f"{x['threshold']:.3f}",
                        "yes" if x["reached"] else "<b>no</b>",
                        _num(x["coverage"]),
                        _num(x["accuracy"]),
                        str(x["n"]),
                    ]
                    for x in fit["fields"]
                ],
            )
        )
    parts.append("<h3>Calibration</h3>" + _img(pngs, f"{tag}-reliability.png") + _img(pngs, f"{tag}-coverage.png"))
    confusions = [n for n in pngs if n.startswith(f"{tag}-confusion-")]
    if confusions:
        parts.append("<h3>Confusion</h3>" + "".join(_img(pngs, n) for n in confusions))
    return "\n".join(parts)


STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%;text-align:right}td:first-child{text-align:left}"
    "th{background:#f0f0f0}h2{border-bottom:2px solid #1976d2}"
)


def render_html(doc: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """One HTML page, images inlined: it can be mailed or archived as a single file."""
    e = html.escape
    head = (
        f"<h1>Loupe evaluation: {e(doc['task'])}</h1><p>labelled set {e(doc['labelled_set'])} "
        f"({doc['images']} images), {e(doc['created'])}</p>"
    )
    body = [head, "<h2>Latency and cost</h2>", _img(pngs, "cost.png")]
    body += [_system_html(i, s, pngs) for i, s in enumerate(doc["systems"])]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Loupe evaluation</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_report(
    doc: dict[str, Any], out_dir: Path, make_plots: Callable[[dict[str, Any]], dict[str, bytes]] = plots
) -> dict[str, Path]:
    """report.json, plots/*.png and report.html in `out_dir`; returns their paths."""
    pngs = make_plots(doc)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    for name, data in pngs.items():
        with atomic_open(out_dir / "plots" / name, "wb") as f:
            f.write(data)
    with atomic_open(out_dir / "report.json", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1, default=str)
    with atomic_open(out_dir / "report.html", encoding="utf-8") as f:
        f.write(render_html(doc, pngs))
    return {"json": out_dir / "report.json", "html": out_dir / "report.html", "plots": out_dir / "plots"}
