"""evaluate_video (apps/video_eval.py): the one-click protocol, oracle re-acquisition and the counts,
on the stand-in segmenter (exact) and on the shipped sam-mini over a clip read back from disk."""

from __future__ import annotations

import numpy as np
import pytest

from slimsam_edge.apps.tracker import demo_predictor
from slimsam_edge.apps.video_eval import evaluate_video
from slimsam_edge.data.synth_video import VideoFrame


class Clip(list):
    """Frames of white squares; object k's box per frame (x, y, w, h) or None when absent."""

    def __init__(self, tracks: dict[int, list], hw=(96, 128)):
        self.object_ids = sorted(tracks)
        n = len(next(iter(tracks.values())))
        for i in range(n):
            img, labels = np.zeros((*hw, 3), np.uint8), np.zeros(hw, np.uint8)
            for k in self.object_ids:
                if tracks[k][i] is not None:
                    x, y, w, h = tracks[k][i]
                    sl = (slice(max(y, 0), max(y + h, 0)), slice(max(x, 0), max(x + w, 0)))
                    img[sl], labels[sl] = 255, k
            self.append(VideoFrame(i, img, labels))


def test_protocol_counts_losses_and_oracle_reacquisitions() -> None:
    # object 1 present throughout; object 2 appears at frame 2, leaves at 5, comes back at 8
    one = [(10, 10, 20, 20)] * 12
    two = [None, None] + [(60, 50, 20, 20)] * 3 + [None] * 3 + [(90, 50, 20, 20)] * 4
    calls = []
    progress = lambda done, total: calls.append((done, total))  # noqa: E731
    r = evaluate_video(demo_predictor(), Clip({1: one, 2: two}), progress=progress)
    assert calls[-1] == (12, 12) and len(calls) == 12
    assert r["frames"] == 12 and r["fps"] > 0 and r["seconds"] > 0
    assert r["objects"][1]["frames"] == 11 and r["objects"][2]["frames"] == 9  # prompt frames not scored
    assert r["losses"] == 1 and r["reacquisitions"] == 1  # lost when it left, oracle box when back
    assert r["J"] == pytest.approx(1.0) and r["F"] == pytest.approx(1.0)  # the stand-in is exact


def test_a_mask_left_behind_is_scored_zero() -> None:
    """An object that vanishes while its mask lingers (a tracker that cannot tell) costs J."""
    from slimsam_edge.apps.tracker import TrackGate

    one = [(10, 10, 20, 20)] * 4 + [None] * 4
    r = evaluate_video(demo_predictor(), Clip({1: one}), gate=TrackGate())
    assert r["J"] == pytest.approx(1.0) and r["losses"] == 1  # empty mask -> lost -> empty = right


def test_sam_mini_on_a_clip_from_disk(mini_bundle, tmp_path) -> None:
    from slimsam_edge.data.synth_video import ProceduralVideo, VideoDataset, write_video_dataset
    from slimsam_edge.predictor import EdgePredictor

    write_video_dataset(ProceduralVideo(seed=11, frames=24, size=(240, 320), objects=2), tmp_path / "clip", mp4=False)
    p = EdgePredictor.from_bundle(mini_bundle, backend="onnxruntime")
    r = evaluate_video(p, VideoDataset(tmp_path / "clip"))
    assert set(r["objects"]) == {1, 2} and r["frames"] == 24 and r["backend"] == "onnxruntime"
    print(f"seed 11: J {r['J']:.3f} F {r['F']:.3f} losses {r['losses']} reacquisitions {r['reacquisitions']}")
    assert r["J"] > 0.75 and r["F"] > 0.75, r  # measured J 0.908, F 0.934 (2 losses, 2 re-acquisitions)


def test_tracking_and_eval_video_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom slimsam_edge.cli.app import app\nimport slimsam_edge.apps.tracker, slimsam_edge.apps.video_eval\n"
            "try:\n    app(['eval-video', '--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
