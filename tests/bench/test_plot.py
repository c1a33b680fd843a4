"""bench --plot writes its two PNGs (their existence and format, not their pixels), atomically,
and nothing under the user's home."""

from __future__ import annotations

import os

import pytest

from slimsam_edge.bench.plot import pareto_front, write_plots
from slimsam_edge.errors import UsageError


def _row(label, enc, miou, peer=False):
    return {"label": label, "scenario": "click", "headline": "encoder", "peer": "x" if peer else None,
            "stages": {"preprocess": {"p50_ms": 2.0}, "encoder": {"p50_ms": enc}, "decoder": {"p50_ms": 3.0},
                       "postprocess": {"p50_ms": 1.0}},
            "accuracy": {"reason": "random weights: latency only"} if peer else {"point_miou": miou}}


REPORT = {"rows": [_row("a fp32", 100.0, 0.80), _row("a int8", 60.0, 0.78), _row("a bf16", 70.0, 0.76),
                   _row("peer", 300.0, None, peer=True)]}


def test_two_pngs_written_and_nothing_left_behind(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    out = tmp_path / "plots"
    paths = write_plots(REPORT, out)
    assert sorted(p.name for p in paths) == ["pareto.png", "stages.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
    assert sorted(os.listdir(out)) == ["pareto.png", "stages.png"]  # no temporaries
    assert not list(home.iterdir())  # matplotlib's cache went to a temporary folder


def test_pareto_front_and_bad_outputs(tmp_path):
    assert pareto_front([(60.0, 0.78), (100.0, 0.80), (70.0, 0.76)]) == [(60.0, 0.78), (100.0, 0.80)]
    assert pareto_front([]) == []
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_plots(REPORT, f)
