"""bench diff: regressions beyond the recorded spread; saved reports and histories."""

from __future__ import annotations

import json

import pytest

from slimsam_edge.bench.diff import diff_reports, load_report
from slimsam_edge.errors import UsageError


def _report(p50s, spread=1.0, miou=0.8):
    return {"rows": [{"label": label, "scenario": "click", "accuracy": {"point_miou": miou},
                      "stages": {"encoder": {"p50_ms": v, "spread_ms": spread}}} for label, v in p50s.items()]}


def test_bench_diff_flags_only_changes_beyond_the_spread(tmp_path):
    old = _report({"a": 100.0, "b": 50.0, "c": 10.0, "gone": 1.0})
    new = _report({"a": 100.9, "b": 60.0, "c": 8.0, "added": 1.0})
    d = diff_reports(old, new)
    verdicts = {(c.label, c.metric): c.verdict for c in d.changes}
    assert verdicts[("a", "encoder p50")] == "same"          # within the spread
    assert verdicts[("b", "encoder p50")] == "regression"
    assert verdicts[("c", "encoder p50")] == "improvement"
    assert d.only_old == ["gone (click)"] and d.only_new == ["added (click)"]
    assert [c.label for c in d.regressions] == ["b"]
    # a wide recorded spread hides the same change
    assert not diff_reports(_report({"b": 50.0}, spread=12.0), _report({"b": 60.0})).regressions
    # accuracy drops count whatever the timing
    acc = diff_reports(_report({"a": 100.0}), _report({"a": 100.0}, miou=0.78))
    assert [(c.metric, c.verdict) for c in acc.regressions] == [("point_miou", "regression")]
    json.dumps(d.to_dict(), allow_nan=False)


def test_load_report_reads_json_or_the_last_history_line(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(_report({"a": 1.0})))
    hist = tmp_path / "hist.jsonl"
    hist.write_text(json.dumps(_report({"a": 1.0})) + "\n" + json.dumps(_report({"a": 2.0})) + "\n")
    assert load_report(one)["rows"][0]["stages"]["encoder"]["p50_ms"] == 1.0
    assert load_report(hist)["rows"][0]["stages"]["encoder"]["p50_ms"] == 2.0
    bad = tmp_path / "bad.json"
    bad.write_text("not json {")
    with pytest.raises(UsageError, match="is not JSON"):
        load_report(bad)
    with pytest.raises(UsageError, match="is not a file"):
        load_report(tmp_path)
    with pytest.raises(UsageError, match="not a bench report"):
        diff_reports({"results": []}, _report({}))
