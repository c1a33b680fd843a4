"""``slimsam-edge bench diff OLD.json NEW.json``: which rows got slower (or less accurate) by more
than the noise the reports recorded.

A row is matched by its ``label`` and ``scenario``. For each stage both reports timed, the new p50
is a regression when it exceeds the old by more than the larger of the two rows' recorded spreads
(``spread_ms``: how far the p50 moved between interleaved repeats) and by more than ``min_ratio``
of the old value; an improvement likewise. Accuracy (mIoU) that drops by more than
``miou_tolerance`` is a regression whatever the timing says.

Example:
    >>> old = {"rows": [{"label": "a", "scenario": "click",
    ...         "stages": {"encoder": {"p50_ms": 100.0, "spread_ms": 4.0}}}]}
    >>> new = {"rows": [{"label": "a", "scenario": "click",
    ...         "stages": {"encoder": {"p50_ms": 109.0, "spread_ms": 3.0}}}]}
    >>> [(c.metric, c.verdict) for c in diff_reports(old, new).changes]
    [('encoder p50', 'regression')]
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: accuracy keys compared (higher is better)
ACCURACY_KEYS = ("point_miou", "box_miou", "agreement_fp32")


@dataclass(frozen=True)
class Change:
    """One compared metric of one row."""

    label: str
    scenario: str
    metric: str
    old: float
    new: float
    noise: float
    verdict: str  # "regression" | "improvement" | "same"

    @property
    def ratio(self) -> float:
        return self.new / self.old if self.old else math.inf


@dataclass
class DiffReport:
    """Every compared metric, and the rows only one report has."""

    changes: list[Change] = field(default_factory=list)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    def to_dict(self) -> dict[str, Any]:
        return {"regressions": len(self.regressions), "changes": [asdict(c) for c in self.changes],
                "only_old": self.only_old, "only_new": self.only_new}


def _rows(report: Any, where: str) -> dict[tuple[str, str], dict]:
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
        raise UsageError(f"{where} is not a bench report (no \"rows\" list); save one with "
                         "`slimsam-edge bench ... --save FILE` or --json")
    rows = {}
    for i, row in enumerate(report["rows"]):
        if not isinstance(row, dict) or not isinstance(row.get("label"), str):
            raise UsageError(f"{where}: row {i} has no label; it is not a bench report row")
        rows[(row["label"], str(row.get("scenario", "click")))] = row
    return rows


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _verdict(old: float, new: float, noise: float, min_ratio: float, lower_is_better: bool) -> str:
    delta = (new - old) if lower_is_better else (old - new)
    if abs(delta) <= noise or abs(delta) <= min_ratio * abs(old):
        return "same"
    return "regression" if delta > 0 else "improvement"


def diff_reports(old: Any, new: Any, *, min_ratio: float = 0.02, miou_tolerance: float = 0.005,
                 old_name: str = "OLD", new_name: str = "NEW") -> DiffReport:
    """Compare two bench reports (dicts as ``bench --json`` / ``--save`` write them)."""
    a, b = _rows(old, old_name), _rows(new, new_name)
    out = DiffReport(only_old=[f"{k[0]} ({k[1]})" for k in a if k not in b],
                     only_new=[f"{k[0]} ({k[1]})" for k in b if k not in a])
    for key in (k for k in a if k in b):
        ra, rb = a[key], b[key]
        sa, sb = ra.get("stages") or {}, rb.get("stages") or {}
        for stage in (s for s in sa if s in sb):
            va, vb = _number(sa[stage].get("p50_ms")), _number(sb[stage].get("p50_ms"))
            if va is None or vb is None:
                continue
            noise = max(_number(sa[stage].get("spread_ms")) or 0.0, _number(sb[stage].get("spread_ms")) or 0.0)
            out.changes.append(Change(key[0], key[1], f"{stage} p50", va, vb, noise,
                                      _verdict(va, vb, noise, min_ratio, lower_is_better=True)))
        acc_a, acc_b = ra.get("accuracy") or {}, rb.get("accuracy") or {}
        for metric in ACCURACY_KEYS:
            va, vb = _number(acc_a.get(metric)), _number(acc_b.get(metric))
            if va is None or vb is None:
                continue
            out.changes.append(Change(key[0], key[1], metric, va, vb, miou_tolerance,
                                      _verdict(va, vb, miou_tolerance, 0.0, lower_is_better=False)))
    return out


def load_report(path: Path | str) -> dict[str, Any]:
    """Read a saved report: a JSON object, or the last line of a ``--save`` history (JSON lines)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p} is not a file; give a report written by `slimsam-edge bench --json` or --save")
    if p.stat().st_size > 256 * 2**20:
        raise UsageError(f"{p} is larger than 256 MiB; it is not a bench report")
    text = p.read_text(encoding="utf-8", errors="replace").strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        try:
            return json.loads(lines[-1]) if lines else {}
        except (json.JSONDecodeError, RecursionError):
            raise UsageError(f"{p} is not JSON; give a report written by `slimsam-edge bench --json` "
                             "or --save") from None
