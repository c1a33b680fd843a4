"""A bench report as a table: rich (terminal), CSV and Markdown share one column list.

Every cell that has no number says why in a footnote instead of printing 0 or leaving a blank.

Example:
    >>> row = {"label": "m onnxruntime/fp32", "scenario": "click", "headline": "encoder", "ratio": 1.0,
    ...        "stages": {"encoder": {"p50_ms": 12.5, "p90_ms": 13.0, "p99_ms": 14.0, "spread_ms": 0.4},
    ...                   "decoder_plus_postprocess": {"p50_ms": 3.25}},
    ...        "accuracy": {"point_miou": 0.8123, "box_miou": 0.85, "agreement_fp32": 1.0},
    ...        "energy": {"per_image": {"joules_per_item": None, "reason": "no meter"}},
    ...        "efficiency": {"pct_of_peak": 12.3, "achieved_gflops": 40.0}, "cold_start_s": 0.5, "peak_rss_mb": 120.0}
    >>> cells(row)["headline p50 / p90 / p99 ms"], cells(row)["energy J/image"], cells(row)["point mIoU"]
    ('12.5 / 13.0 / 14.0', 'n/a', '0.812')
"""

from __future__ import annotations

import csv
import io
from typing import Any, Callable

COLUMNS = ("row", "scenario", "headline p50 / p90 / p99 ms", "spread ms", "x first", "decoder+post p50 ms",
           "point mIoU", "box mIoU", "agree fp32", "GFLOP/s", "% peak", "energy J/image", "cold s", "peak MiB")


def _num(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _energy(row: dict) -> Any:
    e = row.get("energy", {})
    part = e.get("per_image") or e.get("per_frame") or {}
    return part.get("joules_per_item")


def cells(row: dict) -> dict[str, str]:
    """The table cells of one report row, by column name."""
    head = row["stages"].get(row.get("headline") or "", {})
    dec = row["stages"].get("decoder_plus_postprocess", {})
    acc, eff = row.get("accuracy", {}), row.get("efficiency", {})
    return {
        "row": row["label"],
        "scenario": row["scenario"],
        "headline p50 / p90 / p99 ms": (f"{head['p50_ms']:.1f} / {head['p90_ms']:.1f} / {head['p99_ms']:.1f}"
                                         if head.get("p50_ms") is not None else "n/a"),
        "spread ms": _num(head.get("spread_ms"), ".1f"),
        "x first": _num(row.get("ratio"), ".2f"),
        "decoder+post p50 ms": _num(dec.get("p50_ms"), ".2f"),
        "point mIoU": _num(acc.get("point_miou"), ".3f"),
        "box mIoU": _num(acc.get("box_miou"), ".3f"),
        "agree fp32": _num(acc.get("agreement_fp32"), ".3f"),
        "GFLOP/s": _num(eff.get("achieved_gflops"), ".1f"),
        "% peak": _num(eff.get("pct_of_peak"), ".1f"),
        "energy J/image": _num(_energy(row), ".3f"),
        "cold s": _num(row.get("cold_start_s"), ".2f"),
        "peak MiB": _num(row.get("peak_rss_mb"), ".0f"),
    }


def reasons(report: dict) -> list[str]:
    """One line per distinct reason a cell says n/a (accuracy, energy, % of peak), and the skips."""
    seen: dict[str, None] = {}
    rows_by: dict[tuple[str, str], list[str]] = {}  # (what, reason) -> the rows it applies to
    for row in report["rows"]:
        for what, block in (("accuracy", row.get("accuracy", {})), ("% of peak", row.get("efficiency", {}))):
            if block.get("reason"):
                rows_by.setdefault((what, block["reason"]), []).append(f"{row['label']} ({row['scenario']})")
        for part, e in row.get("energy", {}).items():
            if e.get("joules_per_item") is None and e.get("reason"):
                seen[f"energy: {e['reason']}"] = None
    for (what, reason), labels in rows_by.items():
        which = labels[0] if len(labels) == 1 else f"{len(labels)} rows ({'; '.join(labels)})"
        seen[f"{what} of {which}: {reason}"] = None
    for s in report.get("skipped", []):
        what = "/".join(x for x in (s.get("backend"), s.get("precision")) if x)
        seen[f"skipped {s.get('label', '')} {what}: {s['reason']}".replace("  ", " ")] = None
    return list(seen)


def machine_line(report: dict) -> str:
    """CPU, cores and the flags that decide which precisions are fast."""
    m = report["machine"]
    feats = ", ".join(m.get("cpu_features") or []) or "no AVX-512 / VNNI / BF16 / AMX"
    return f"{m.get('cpu_model', '?')}, {m.get('cores_logical', '?')} logical cores; {feats}"


def to_csv(report: dict) -> str:
    """The table as CSV (one header line, one line per row)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in report["rows"]:
        c = cells(row)
        w.writerow([c[k] for k in COLUMNS])
    return buf.getvalue()


def to_markdown(report: dict) -> str:
    """The table as Markdown, with the machine, the protocol and the n/a reasons under it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report["rows"]:
        c = cells(row)
        lines.append("| " + " | ".join(c[k].replace("|", "/") for k in COLUMNS) + " |")
    p = report["protocol"]
    lines += ["", f"Machine: {machine_line(report)}.",
              f"Protocol: {p['repeats']} interleaved repeats per row (each a fresh process), "
              f"{p['runs_per_repeat']} images and {p['prompts_per_repeat']} prompts per repeat at least, "
              f"{p['warmup']} warm-up, threads {p['threads'] or 'runtime default'}; "
              f"headline = the encoder (click), the frame (video) or the image (everything)."]
    prof = profile_lines(report)
    if prof:
        lines += ["", "Where the time goes (the runtime's profiler, one pass per graph):", "", *prof]
    why = reasons(report)
    if why:
        lines += ["", "Cells without a number:", *[f"- {w}" for w in why]]
    return "\n".join(lines) + "\n"


def profile_lines(report: dict) -> list[str]:
    """Markdown table of where each profiled row's time goes, per graph and op group (% of the
    graph's kernel time), or [] when nothing was profiled.

    Example:
        >>> rep = {"rows": [{"label": "m", "scenario": "click", "profile": {"image_encoder": {
        ...     "total_ms_per_run": 10.0, "share": {"attention": 0.5, "matmul": 0.5}},
        ...     "mask_decoder": {"reason": "no hook"}}}]}
        >>> profile_lines(rep)[2]
        '| m | image_encoder | 10.0 | 50 | 50 | 0 | 0 | 0 | 0 |'
    """
    from ..runtimes.profiling import GROUPS

    rows = [r for r in report["rows"] if r.get("profile")]
    if not rows:
        return []
    lines = ["| row | graph | ms / run | " + " | ".join(f"% {g}" for g in GROUPS) + " |",
             "|" + "---|" * (3 + len(GROUPS))]
    for r in rows:
        for graph, p in r["profile"].items():
            if "share" not in p:
                lines.append(f"| {r['label']} | {graph} | n/a: {p.get('reason', '?')} |" + " |" * len(GROUPS))
                continue
            shares = " | ".join(f"{100 * p['share'].get(g, 0.0):.0f}" for g in GROUPS)
            lines.append(f"| {r['label']} | {graph} | {p['total_ms_per_run']:.1f} | {shares} |")
    return lines


def print_table(report: dict, echo: Callable[[Any], None] | None = None) -> None:
    """The rich table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: do not wrap the table to 80 columns
        console = Console(width=max(console.width, 200))
    out = echo or console.print
    out(machine_line(report))
    t = Table(*COLUMNS)
    for row in report["rows"]:
        c = cells(row)
        t.add_row(*[c[k] for k in COLUMNS])
    out(t)
    prof = profile_lines(report)
    if prof:
        p = Table(*[c.strip() for c in prof[0].strip("|").split("|")])
        for line in prof[2:]:
            cells_ = [c.strip() for c in line.strip("|").split("|")]
            p.add_row(*(cells_ + [""] * (len(p.columns) - len(cells_)))[: len(p.columns)])
        out(p)
    for w in reasons(report):
        out(f"[yellow]{w}[/]")
