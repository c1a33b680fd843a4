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
    assert Tracker(p).update(squares()) == {} and p.encoder.calls == 0  # no object: no encoder run
    for i in range(1, 9):
        out = t.update(squares((10 + 4 * i, 10 + 2 * i, 20, 20), (70 - 2 * i, 50, 24, 16)))
        assert out[1].bbox == (10 + 4 * i, 10 + 2 * i, 20, 20) and out[2].bbox == (70 - 2 * i, 50, 24, 16)
        assert out[1].state == out[2].state == TRACKING and out[1].score == pytest.approx(0.95)
        assert out[1].mask.shape == (H, W) and out[1].mask.sum() == 400
    assert p.encoder.calls == p.decoder.calls == p.batch_calls == 8 and p.decoder.prompts == 16
    assert t.objects == [1, 2] and t.state(1) == TRACKING


@pytest.mark.parametrize("multimask,mask_input", [(True, True), (False, False)])
def test_mask_output_options(multimask, mask_input) -> None:
    """Three masks per object (the one agreeing with the previous mask kept) or one; with or
    without the previous logits as mask_input: a moving square is followed either way."""
    t = Tracker(demo_predictor(), multimask=multimask, mask_input=mask_input)
    t.add_object(squares((10, 10, 20, 20)), box=[6, 6, 34, 34])
    for i in range(1, 5):
        r = t.update(squares((10 + 4 * i, 10, 20, 20)))[1]
        assert r.bbox == (10 + 4 * i, 10, 20, 20) and r.state == TRACKING
    assert (t._tracks[1].logits is not None) == mask_input


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
    """A mask that jumps (area x3: it merged with another) and stays so is uncertain, then lost; one
    that jumps for a frame and comes back is tracked again."""
    t = Tracker(demo_predictor(), gate=TrackGate(max_uncertain=2))
    t.add_object(squares((10, 10, 20, 20)), points=[[20, 20]])
    big, small = squares((10, 10, 60, 20)), squares((10, 10, 20, 20))
    assert [t.update(big)[1].state for _ in range(4)] == [UNCERTAIN, UNCERTAIN, LOST, LOST]
    t = Tracker(demo_predictor())
    t.add_object(squares((10, 10, 20, 20)), points=[[20, 20]])
    assert [t.update(f)[1].state for f in (small, big, small)] == [TRACKING, UNCERTAIN, TRACKING]
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


# ---------------------------------------------------------------------------------- sam-mini on generated clips
# The tracker's settings (single-mask output for box prompts, mask_input, margin, TrackGate defaults)
# were chosen on ProceduralVideo seeds 0, 1, 2 (40 frames, 240x320, 3 objects); the clips below use
# other seeds. Thresholds sit below what was measured (see each test's comment).
# measured (onnxruntime, sam-mini fp32): seed 5 one object mean J 0.968, min 0.960; seed 6 object 1
# 0.716 (object 3 sweeps over it mid-clip; no re-acquisition in that test), object 3 added at frame 6
# 0.967; seed 7 object 2 after its re-acquisition 0.857.
MIN_MEAN_J = 0.85       # an object tracked from a click, unoccluded
MIN_FRAME_J = 0.75      # any frame of it
MIN_OCCLUDED_J = 0.6    # an object another one passes over
MIN_REACQUIRED_J = 0.7  # after re-acquisition from a box


@pytest.fixture(scope="module")
def mini(mini_bundle):
    from slimsam_edge.predictor import EdgePredictor

    return EdgePredictor.from_bundle(mini_bundle, backend="onnxruntime")


def _click(mask: np.ndarray) -> list:
    from slimsam_edge.apps.tracker import interior_point

    return [interior_point(mask)]


def _j(pred: np.ndarray, gt: np.ndarray) -> float:
    from slimsam_edge.eval.video_metrics import region_j

    return region_j(pred, gt)


def test_sam_mini_keeps_j_after_a_first_frame_click(mini) -> None:
    """One click on frame 0, then 31 frames of tracking alone (object 1 wanders, rotates, scales)."""
    from slimsam_edge.data.synth_video import ProceduralVideo

    video = ProceduralVideo(seed=5, frames=32, size=(240, 320), objects=1)
    t = Tracker(mini)
    t.add_object(video[0].image, points=_click(video[0].mask(1)))
    js = []
    for f in list(video)[1:]:
        r = t.update(f.image)[1]
        js.append(_j(r.mask, f.mask(1)))
        assert r.state != LOST
    print(f"seed 5: mean J {np.mean(js):.3f}, min J {min(js):.3f}")
    assert np.mean(js) > MIN_MEAN_J and min(js) > MIN_FRAME_J


def test_sam_mini_object_added_mid_stream_and_one_removed(mini) -> None:
    from slimsam_edge.data.synth_video import ProceduralVideo

    video = ProceduralVideo(seed=6, frames=24, size=(240, 320), objects=3)
    p = counted(mini)
    try:
        t = Tracker(p)
        t.add_object(video[0].image, points=_click(video[0].mask(1)))
        gt_of = {1: 1, 2: 3}  # tracker id -> the clip's object id
        js: dict[int, list] = {1: [], 2: []}
        for f in list(video)[1:]:
            out = t.update(f.image)
            assert sorted(out) == ([1] if f.index <= 6 else [1, 2] if f.index <= 16 else [2])
            for k, r in out.items():
                js[k].append(_j(r.mask, f.mask(gt_of[k])))
            if f.index == 6:
                assert t.add_object(f.image, points=_click(f.mask(3))) == 2
            if f.index == 16:
                t.remove_object(1)
                assert t.objects == [2]
        assert len(js[1]) == 16 and len(js[2]) == len(video) - 7
        print(f"seed 6: object 1 mean J {np.mean(js[1]):.3f}, object 3 (added at frame 6) {np.mean(js[2]):.3f}")
        assert np.mean(js[1]) > MIN_OCCLUDED_J and np.mean(js[2]) > MIN_MEAN_J
        assert p.batch_calls == p.decoder.calls  # one decoder call per predict_batch (<= 32 objects)
    finally:
        p.encoder, p.decoder = p.encoder.runner, p.decoder.runner
        del p.predict_batch


def test_sam_mini_lost_when_it_leaves_then_reacquired(mini) -> None:
    """Object 2 leaves the frame (lost within a few frames, its mask then empty) and is re-acquired
    from its ground-truth box when it is back (the callback a detector would fill)."""
    from slimsam_edge.apps.tracker import mask_bbox
    from slimsam_edge.data.synth_video import ProceduralVideo

    video = ProceduralVideo(seed=7, frames=36, size=(240, 320), objects=2)
    events = [(e["frame"], e["event"]) for e in video.meta()["events"] if e["object"] == 2]
    left = next(i for i, e in events if e == "leaves")
    back = next(i for i, e in events if e == "enters" and i > left)
    frames = list(video)
    asked = []

    def reacquire(frame, lost_ids):
        f = next(f for f in frames if f.image is frame)
        asked.append(f.index)
        gt = f.mask(2)
        if gt.sum() < 64:
            return {}
        x, y, w, h = mask_bbox(gt)
        return {2: Prompt(box=[x, y, x + w, y + h])}

    t = Tracker(mini, reacquire=reacquire)
    first = next(f for f in frames if f.mask(2).sum() >= 64)
    assert t.add_object(first.image, points=_click(first.mask(2)), obj_id=2) == 2
    states, js = {}, {}
    for f in frames[first.index + 1:]:
        r = t.update(f.image)[2]
        states[f.index], js[f.index] = r.state, _j(r.mask, f.mask(2))
    gone = [i for i in range(left - 4, back) if states[i] == LOST]
    found_at = min(i for i, s in states.items() if i >= back and s == TRACKING)
    after = [js[i] for i in range(found_at, len(video))]
    print(f"seed 7: leaves at {left}, lost from {gone[0]}; back at {back}, tracking again at {found_at}, "
          f"J after {np.mean(after):.3f}; states {''.join(states[i][0] for i in sorted(states))}")
    assert gone and gone[0] <= left + 2 and all(states[i] == LOST for i in range(left + 2, back))
    assert found_at <= back + 3 and min(asked) == gone[0] + 1
    assert np.mean(after) > MIN_REACQUIRED_J


def test_tracker_refuses_a_second_thread() -> None:
    """docs/embedding.md's rule: one thread drives a Tracker; a second one inside update() at the
    same time is refused with ConcurrentUseError (one line), and the first one is unharmed."""
    import threading

    from slimsam_edge.errors import ConcurrentUseError

    armed, inside, release = threading.Event(), threading.Event(), threading.Event()
    base = demo_predictor()

    class Slow:
        """The stand-in predictor, holding the first thread inside its decoder call."""

        def __getattr__(self, name):
            return getattr(base, name)

        def predict_batch(self, *args, **kwargs):
            if armed.is_set() and threading.current_thread() is not threading.main_thread():
                inside.set()
                release.wait(10)
            return base.predict_batch(*args, **kwargs)

    frame = squares((10, 30, 20, 20))
    t = Tracker(Slow())
    obj = t.add_object(frame, points=[[20, 40]])
    got = {}
    armed.set()
    worker = threading.Thread(target=lambda: got.update(t.update(frame)))
    worker.start()
    try:
        assert inside.wait(10)
        for call in (lambda: t.update(frame), lambda: t.remove_object(obj),
                     lambda: t.add_object(frame, points=[[20, 40]])):
            with pytest.raises(ConcurrentUseError, match="this Tracker is in use by another thread") as err:
                call()
            assert "\n" not in str(err.value)
    finally:
        release.set()
        worker.join(10)
    assert not worker.is_alive() and got[obj].state == TRACKING
    assert t.objects == [obj]  # the refused calls changed nothing
