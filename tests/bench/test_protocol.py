"""The benchmark protocol's parts: the interleaving order, the statistics, SingleStream, bench diff."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from slimsam_edge.bench.diff import diff_reports, load_report
from slimsam_edge.bench.schedule import by_config, interleave
from slimsam_edge.bench.stats import latency_stats, single_stream, spread_ms
from slimsam_edge.errors import UsageError


def test_each_config_once_per_round_and_rounds_rotate():
    configs = ["a", "b", "c", "d"]
    slots = interleave(configs, repeats=5)
    assert len(slots) == 20 and [s.position for s in slots] == list(range(20))
    for r in range(5):
        rnd = [s for s in slots if s.repeat == r]
        assert sorted(s.config for s in rnd) == configs  # every config once per round
        assert rnd[0].index == r % 4                      # the round starts one further on
    assert Counter(s.config for s in slots) == {c: 5 for c in configs}
    # no config always follows the same one
    followers = {c: {slots[i + 1].config for i in range(19) if slots[i].config == c} for c in configs}
    assert all(len(f) > 1 for f in followers.values())


def test_one_config_and_bad_counts():
    assert [(s.index, s.repeat) for s in interleave(["x"], 3)] == [(0, 0), (0, 1), (0, 2)]
    with pytest.raises(UsageError, match="at least one bundle"):
        interleave([], 2)
    with pytest.raises(UsageError, match="--repeats 0"):
        interleave(["x"], 0)


def test_by_config_regroups_in_repeat_order():
    slots = interleave(["a", "b", "c"], 3)
    values = [f"{s.config}{s.repeat}" for s in slots]
    assert by_config(slots, values) == {0: ["a0", "a1", "a2"], 1: ["b0", "b1", "b2"], 2: ["c0", "c1", "c2"]}
    with pytest.raises(ValueError):
        by_config(slots, values[:-1])


def test_latency_stats_percentiles():
    s = latency_stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert s["n"] == 100 and s["min_ms"] == 1.0 and s["max_ms"] == 100.0
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["mean_ms"] == pytest.approx(50.5)
    assert latency_stats([]) == {"n": 0}
    assert spread_ms([5.0]) == 0.0 and spread_ms([5.0, 7.5, 6.0]) == 2.5


def test_single_stream_meets_both_minimums_on_a_fake_clock():
    now = [0.0]

    def query(dt=0.1):
        now[0] += dt
        return dt

    lat = single_stream(query, min_queries=5, min_duration_s=1.0, clock=lambda: now[0])
    assert len(lat) in (10, 11) and sum(lat) >= 1.0 - 1e-9   # duration bound
    now[0] = 0.0
    assert len(single_stream(query, min_queries=30, min_duration_s=1.0, clock=lambda: now[0])) == 30
    now[0] = 0.0
    assert len(single_stream(query, min_queries=2, min_duration_s=100.0, max_queries=7,
                             clock=lambda: now[0])) == 7
    for bad in ({"min_queries": 0, "min_duration_s": 1.0}, {"min_queries": 1, "min_duration_s": float("nan")},
                {"min_queries": 5, "min_duration_s": 1.0, "max_queries": 4}):
        with pytest.raises(UsageError):
            single_stream(query, **bad)


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
