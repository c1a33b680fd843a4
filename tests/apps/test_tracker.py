"""Tracker (apps/tracker.py): the tracking logic on a stand-in segmenter (demo_predictor), the
one-encoder-run + one-decoder-call contract and the bad inputs on a real tiny bundle, and tracking
quality of the shipped sam-mini on generated videos."""

from __future__ import annotations

import numpy as np
import pytest

from slimsam_edge.apps.tracker import LOST, TRACKING, UNCERTAIN, Prompt, Tracker, TrackGate, demo_predictor
from slimsam_edge.errors import BundleError, ImageError, PromptError, UsageError

H, W = 96, 128


def squares(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A black HxW frame with white rectangles (x, y, w, h)."""
    f = np.zeros((H, W, 3), np.uint8)
    for x, y, w, h in boxes:
        f[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = 255
    return f


class Counting:
    """Wraps a runner and counts its infer calls (and prompts decoded)."""

    def __init__(self, runner):
        self.runner, self.calls, self.prompts = runner, 0, 0

    def infer(self, feed):
        self.calls += 1
        self.prompts += feed["point_coords"].shape[0] if "point_coords" in feed else 1
        return self.runner.infer(feed)

    def __getattr__(self, name):
        return getattr(self.runner, name)


def counted(predictor):
    predictor.encoder, predictor.decoder = Counting(predictor.encoder), Counting(predictor.decoder)
    batch = predictor.predict_batch
    predictor.batch_calls = 0

    def predict_batch(*a, **k):
        predictor.batch_calls += 1
        return batch(*a, **k)

    predictor.predict_batch = predict_batch
    return predictor


# ---------------------------------------------------------------------------------- logic (stand-in)
def test_follows_moving_objects_one_encode_one_batch_per_frame() -> None:
    p = counted(demo_predictor())
    t = Tracker(p)
    assert t.add_object(squares((10, 10, 20, 20), (70, 50, 24, 16)), points=[[20, 20]]) == 1
    assert t.add_object(squares((10, 10, 20, 20), (70, 50, 24, 16)), box=[66, 46, 98, 70]) == 2
    assert p.encoder.calls == 1  # the same frame twice: encoded once
    assert t.results[1].bbox == (10, 10, 20, 20) and t.results[2].bbox == (70, 50, 24, 16)
    p.encoder.calls = p.decoder.calls = p.batch_calls = p.decoder.prompts = 0
    for i in range(1, 9):
        out = t.update(squares((10 + 4 * i, 10 + 2 * i, 20, 20), (70 - 2 * i, 50, 24, 16)))
        assert out[1].bbox == (10 + 4 * i, 10 + 2 * i, 20, 20) and out[2].bbox == (70 - 2 * i, 50, 24, 16)
        assert out[1].state == out[2].state == TRACKING and out[1].score == pytest.approx(0.95)
        assert out[1].mask.shape == (H, W) and out[1].mask.sum() == 400
    assert p.encoder.calls == p.decoder.calls == p.batch_calls == 8 and p.decoder.prompts == 16
    assert t.objects == [1, 2] and t.state(1) == TRACKING


def test_leaves_is_lost_not_decoded_then_reacquired() -> None:
    p = counted(demo_predictor())
    asked = []

    def reacquire(frame, lost_ids):
        asked.append(list(lost_ids))
        if frame[:, 100:].any():  # a "detector": something on the right
            return {lost_ids[0]: Prompt(box=[98, 20, 128, 60])}
        return {}

    t = Tracker(p, reacquire=reacquire)
    t.add_object(squares((10, 30, 20, 20), (60, 30, 20, 20)), points=[[20, 40]])
    t.add_object(squares((10, 30, 20, 20), (60, 30, 20, 20)), points=[[70, 40]])
    xs = [4, -4, -12, -30]  # object 1 slides out to the left
    states = [t.update(squares((x, 30, 20, 20), (60, 30, 20, 20)))[1].state for x in xs]
    assert states[:3] == [TRACKING] * 3 and states[3] == LOST
    assert asked == []  # reacquire runs from the frame after the loss
    p.decoder.prompts = 0
    out = t.update(squares((60, 30, 20, 20)))
    assert asked == [[1]] and p.decoder.prompts == 1  # only object 2 decoded
    assert out[1].state == LOST and not out[1].mask.any() and out[1].bbox is None and out[1].score == 0.0
    out = t.update(squares((104, 30, 20, 20), (60, 30, 20, 20)))
    assert asked == [[1], [1]] and out[1].state == TRACKING and out[1].bbox == (104, 30, 20, 20)
    assert t.update(squares((100, 30, 20, 20), (60, 30, 20, 20)))[1].bbox == (100, 30, 20, 20)
    assert asked == [[1], [1]]


def test_add_mid_stream_remove_and_reprompt() -> None:
    t = Tracker(demo_predictor())
    t.add_object(squares((10, 10, 20, 20)), points=[[20, 20]])
    t.update(squares((12, 10, 20, 20), (80, 60, 16, 16)))
    assert t.add_object(squares((12, 10, 20, 20), (80, 60, 16, 16)), mask=squares((80, 60, 16, 16))[..., 0] > 0) == 2
    assert t.results[2].bbox == (80, 60, 16, 16)
    out = t.update(squares((14, 10, 20, 20), (82, 60, 16, 16)))
    assert out[2].bbox == (82, 60, 16, 16) and out[1].bbox == (14, 10, 20, 20)
    t.remove_object(1)
    assert t.objects == [2] and list(t.update(squares((84, 60, 16, 16))).keys()) == [2]
    assert t.add_object(squares((84, 60, 16, 16), (10, 10, 8, 8)), points=[[14, 14]]) == 3  # ids not reused
    assert t.add_object(squares((84, 60, 16, 16), (10, 10, 8, 8), (40, 40, 8, 8)), points=[[44, 44]], obj_id=1) == 1
    out = t.update(squares((84, 60, 16, 16), (40, 10, 8, 8), (40, 40, 8, 8)), prompts={3: Prompt(box=[36, 6, 52, 22])})
    assert out[3].bbox == (40, 10, 8, 8) and out[1].bbox == (40, 40, 8, 8)


def test_gate_uncertain_then_lost() -> None:
    """An object whose mask suddenly triples (merges with another) is uncertain, then lost."""
    t = Tracker(demo_predictor(), gate=TrackGate(max_uncertain=2))
    t.add_object(squares((10, 10, 20, 20)), points=[[20, 20]])
    big = squares((10, 10, 60, 20))
    assert [t.update(big)[1].state for _ in range(4)] == [UNCERTAIN, UNCERTAIN, LOST, LOST]
    # a gradual change is tracked (the reference follows trusted frames)
    t = Tracker(demo_predictor())
    t.add_object(squares((10, 10, 20, 20)), points=[[20, 20]])
    assert {t.update(squares((10, 10, 20 + 6 * i, 20)))[1].state for i in range(1, 8)} == {TRACKING}


def test_memory_does_not_grow_with_frames() -> None:
    def held(tracker) -> int:
        seen, total, todo = set(), 0, [tracker.__dict__]
        while todo:
            obj = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, np.ndarray):
                total += obj.nbytes
            elif isinstance(obj, dict):
                todo += [v for v in obj.values() if not callable(v)]
            elif isinstance(obj, (list, tuple)):
                todo += list(obj)
            elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("slimsam_edge.apps"):
                todo.append(obj.__dict__)
        return total

    t = Tracker(demo_predictor())
    t.add_object(squares((10, 10, 20, 20)), points=[[20, 20]])
    sizes = []
    for i in range(40):
        t.update(squares((10 + i % 7, 10, 20, 20)))
        sizes.append(held(t))
    assert sizes[-1] == sizes[5] and t.frames == 40


# ---------------------------------------------------------------------------------- real runners, bad input
@pytest.fixture(scope="module")
def tiny_predictor(tiny_bundle):
    from slimsam_edge.predictor import EdgePredictor

    return EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime")


def test_tiny_bundle_one_encoder_one_decoder_call(tiny_predictor) -> None:
    from helpers import photo

    p = counted(tiny_predictor)
    try:
        frames = [photo((120, 160), seed=s) for s in range(4)]
        t = Tracker(p, gate=TrackGate(min_score=0.0, min_stability=0.0, max_area_change=1e9, max_shift=1e9,
                                       max_area_frac=1.0, min_area=1))
        for k, box in enumerate(([10, 10, 60, 50], [70, 40, 150, 110], [30, 60, 90, 118]), 1):
            assert t.add_object(frames[0], box=box) == k
        p.encoder.calls = p.decoder.calls = p.batch_calls = p.decoder.prompts = 0
        for f in frames[1:]:
            out = t.update(f)
            assert sorted(out) == [1, 2, 3] and all(r.mask.shape == (120, 160) for r in out.values())
        live = sum(t.state(k) != LOST for k in t.objects)
        assert p.encoder.calls == p.decoder.calls == p.batch_calls == 3 and p.decoder.prompts <= 9
        emb = p.encode(frames[0])
        p.encoder.calls = 0
        t.update(None, embedding=emb)  # an embedding encoded elsewhere (a pipeline's encode thread)
        assert p.encoder.calls == 0 and p.batch_calls == 4 and live >= 0
    finally:
        p.encoder, p.decoder = p.encoder.runner, p.decoder.runner
        del p.predict_batch


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_bad_input(tiny_predictor) -> None:
    from helpers import photo

    t = Tracker(tiny_predictor)
    frame = photo((120, 160), seed=1)
    t.add_object(frame, box=[10, 10, 60, 50])
    t.add_object(frame, points=[[100, 80]])
    with pytest.raises(UsageError) as err:
        t.remove_object(7)
    assert _one_line(err) == "unknown object id 7; tracked ids: 1, 2"
    for call in (lambda: t.state(7), lambda: t.update(frame, prompts={7: Prompt(box=[1, 1, 9, 9])})):
        with pytest.raises(UsageError, match="unknown object id 7; tracked ids: 1, 2"):
            call()
    with pytest.raises(PromptError) as err:
        t.add_object(frame, points=[[500, 20]])
    assert "point (500, 20) is outside the 160x120 image" in _one_line(err) and t.objects == [1, 2]
    with pytest.raises(PromptError) as err:
        t.update(frame, prompts={2: Prompt(box=[10, 10, 170, 50])})
    assert _one_line(err).startswith("object 2: box corner (170, 50) is outside")
    with pytest.raises(ImageError) as err:
        t.update(photo((240, 320), seed=1))
    assert "320x240 but this video's frames are 160x120" in _one_line(err)
    with pytest.raises(UsageError, match="object id 2 is already tracked"):
        t.add_object(frame, box=[1, 1, 9, 9], obj_id=2)
    with pytest.raises(PromptError, match="needs points, a box or a mask"):
        Prompt()
    with pytest.raises(PromptError, match=r"shape \(N, 2\)"):
        Prompt(points=[1, 2])
    tr = Tracker(tiny_predictor, reacquire=lambda f, ids: [1], gate=TrackGate(min_area=10**9))
    tr.add_object(frame, box=[1, 1, 50, 50])
    assert tr.state(1) == LOST
    with pytest.raises(UsageError, match="reacquire must be a mapping"):
        tr.update(frame)
    with pytest.raises(UsageError, match="TrackGate.min_score"):
        TrackGate(min_score=2)


def test_decoder_without_prompt_axis(tiny_predictor) -> None:
    from slimsam_edge.predictor import EdgePredictor
    from slimsam_edge.runtimes.base import TensorSpec

    class OldDecoder(Counting):
        def input_specs(self):
            return {"point_coords": TensorSpec("point_coords", np.dtype(np.float32), (1, "num_points", 2))}

    old = EdgePredictor(tiny_predictor.encoder, OldDecoder(tiny_predictor.decoder), image_size=tiny_predictor.image_size,
                        pixel_mean=tiny_predictor.pixel_mean, pixel_std=tiny_predictor.pixel_std)
    with pytest.raises(BundleError, match="re-export") as err:
        Tracker(old)
    _one_line(err)
