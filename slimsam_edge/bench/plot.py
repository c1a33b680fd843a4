"""``bench --plot DIR``: the report as pictures (matplotlib, the ``plot`` extra).

- ``pareto.png``: headline latency against point mIoU, one point per (model, backend, precision),
  the Pareto front drawn through the points no other point beats on both; rows without accuracy
  (peers: random weights) are listed under the axes, not drawn at a made-up mIoU.
- ``stages.png``: the click scenario's p50 per stage (preprocess, encoder, decoder,
  postprocess) as stacked bars, one bar per row.

Files are written under temporary names and renamed; matplotlib's own cache goes to a temporary
folder that is removed afterwards (nothing is written under the user's home).

Example:
    >>> pareto_front([(10.0, 0.7), (20.0, 0.8), (15.0, 0.6), (30.0, 0.75)])
    [(10.0, 0.7), (20.0, 0.8)]
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import UsageError

STAGES = ("preprocess", "encoder", "decoder", "postprocess")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points no other point beats on both (lower latency, higher accuracy),
    by increasing latency."""
    front: list[tuple[float, float]] = []
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((lat, acc))
    return front


def _pyplot(cache: str) -> Any:
    os.environ["MPLCONFIGDIR"] = cache
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'slimsam-edge[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def headless_pyplot() -> Iterator[Any]:
    """matplotlib's ``pyplot`` on the Agg backend (no display), its config and cache in a temporary
    folder removed on exit (nothing written under the user's home).

    Raises:
        UsageError: matplotlib is not installed (the ``plot`` extra).

    Example:
        >>> with headless_pyplot() as plt:
        ...     fig, ax = plt.subplots()
        ...     plt.close(fig)
    """
    with tempfile.TemporaryDirectory(prefix="slimsam-mpl-") as cache:
        yield _pyplot(cache)


def save_png(fig: Any, dest: Path) -> Path:
    """Write ``fig`` to ``dest`` as a PNG under a temporary name, renamed into place; ``dest``."""
    from ..fsutil import atomic_path

    with atomic_path(dest, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return dest


def _pareto(plt: Any, report: dict, dest: Path) -> Path:
    rows = [r for r in report["rows"] if r["scenario"] == "click"]
    have = [r for r in rows if r.get("accuracy", {}).get("point_miou") is not None
            and r["stages"].get("encoder", {}).get("p50_ms") is not None]
    without = [r["label"] for r in rows if r not in have]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pts = [(r["stages"]["encoder"]["p50_ms"], r["accuracy"]["point_miou"]) for r in have]
    for r, (x, y) in zip(have, pts):
        ax.scatter([x], [y], s=28)
        ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = pareto_front(pts)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", linewidth=1, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("encoder p50 (ms), lower is better")
    ax.set_ylabel("point mIoU, higher is better")
    ax.set_title("latency vs accuracy, same machine, same run", fontsize=10)
    ax.grid(alpha=0.3)
    if without:
        fig.text(0.01, -0.02, "not drawn (no accuracy): " + "; ".join(without), fontsize=7, ha="left", va="top",
                 wrap=True)
    try:
        return save_png(fig, dest)
    finally:
        plt.close(fig)


def _stages(plt: Any, report: dict, dest: Path) -> Path:
    rows = [r for r in report["rows"] if r["scenario"] == "click"]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.4 * max(len(rows), 1)))
    left = [0.0] * len(rows)
    for stage in STAGES:
        vals = [r["stages"].get(stage, {}).get("p50_ms") or 0.0 for r in rows]
        ax.barh([r["label"] for r in rows], vals, left=left, label=stage)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("p50 per stage (ms): one image encoded + one prompt decoded")
    ax.invert_yaxis()
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25 if rows else -0.1))
    ax.grid(axis="x", alpha=0.3)
    try:
        return save_png(fig, dest)
    finally:
        plt.close(fig)


def write_plots(report: dict, out_dir: Path | str) -> list[Path]:
    """Write ``pareto.png`` and ``stages.png`` into ``out_dir`` (created); return their paths.

    Raises:
        UsageError: ``out_dir`` is a file, or matplotlib is not installed.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--plot {out} is a file; name a folder for the PNGs")
    with headless_pyplot() as plt:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"--plot {out}: cannot create the folder ({err.strerror}); name a writable folder") from None
        return [_pareto(plt, report, out / "pareto.png"), _stages(plt, report, out / "stages.png")]
