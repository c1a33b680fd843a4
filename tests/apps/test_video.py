"""run_video: tracking and segment-everything through the pipeline, its outputs, bad input, Ctrl-C."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from slimsam_edge.apps.video import Target, draw_objects, parse_prompts, plan_prompts, run_video
from slimsam_edge.apps.video_io import open_source
from slimsam_edge.data.rle import counts_from_string
from slimsam_edge.errors import BundleError, DataError, ImageError, PromptError, UsageError

FRAMES, SIZE = 8, (96, 128)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A generated clip as a folder of PNG frames (lossless, so runs are comparable) + its VideoFrames."""
    from slimsam_edge.data.synth_video import ProceduralVideo

    video = ProceduralVideo(seed=3, frames=FRAMES, size=SIZE, objects=2)
    folder = tmp_path_factory.mktemp("clip")
    frames = list(video)
    for f in frames:
        cv2.imwrite(str(folder / f"{f.index:05d}.png"), f.image[..., ::-1])
    return folder, frames


def _peak(mask):
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def _count_frames(path):
    with open_source(str(path)) as src:
        return sum(1 for _ in src)


def _decode(rle):
    """COCO RLE (compressed counts) -> HxW bool, numpy only."""
    h, w = rle["size"]
    counts = counts_from_string(rle["counts"])
    return np.repeat(np.arange(counts.size) % 2 == 1, counts).reshape(w, h).T


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_tracks_prompted_objects_adds_and_removes_them_and_matches_the_tracker(clip, tiny_bundle, tmp_path):
    folder, frames = clip
    x, y = _peak(frames[0].mask(1))
    ys, xs = np.nonzero(frames[0].mask(2))
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"prompts": [
        {"frame": 3, "points": [[x, y], [5, 5, 0]]},
        {"frame": 4, "id": 2, "box": list(box)},
        {"frame": 5, "remove": 1},
    ]}))
    out, masks = tmp_path / "out.mp4", tmp_path / "masks.jsonl"
    seen = []
    result = run_video(str(folder), tiny_bundle, out, targets=[Target(((x, y, 1.0),)), Target(box=box)],
                       prompts_file=prompts, masks=masks, backend="onnxruntime",
                       progress=lambda done, total, fps, dropped: seen.append((done, total, dropped)))
    assert result["frames_read"] == result["frames_done"] == FRAMES and result["dropped"] == 0
    assert result["mode"] == "track" and not result["interrupted"] and result["frame_size"] == list(SIZE)
    assert sorted(result["objects"]) == [2, 3]
    assert [s[0] for s in seen] == list(range(1, FRAMES + 1)) and {s[1] for s in seen} == {FRAMES}
    assert _count_frames(out) == FRAMES and _leftovers(tmp_path) == []
    lines = _lines(masks)
    assert [rec["frame"] for rec in lines] == list(range(FRAMES))
    ids = [[o["id"] for o in rec["objects"]] for rec in lines]
    assert ids == [[1, 2]] * 3 + [[1, 2, 3]] * 2 + [[2, 3]] * 3
    for rec in lines:
        for o in rec["objects"]:
            assert o["state"] in ("tracking", "uncertain", "lost") and 0 <= o["score"] <= 1.5
            assert o["rle"]["size"] == list(SIZE) and isinstance(o["rle"]["counts"], str)
            m = _decode(o["rle"])
            if o["bbox"] is None:
                assert not m.any()
            else:
                bx, by, bw, bh = o["bbox"]
                ys, xs = np.nonzero(m)
                assert (bx, by) == (xs.min(), ys.min()) and m[:, bx + bw:].sum() == m[by + bh:, :].sum() == 0

    # the threaded run gives exactly what the Tracker gives frame by frame on one thread
    from slimsam_edge.apps.tracker import Prompt, Tracker
    from slimsam_edge.predictor import EdgePredictor

    tracker = Tracker(EdgePredictor.from_bundle(tiny_bundle, backend="onnxruntime"))
    tracker.add_object(frames[0].image, points=[[x, y]], obj_id=1)
    tracker.add_object(frames[0].image, box=list(box), obj_id=2)
    for f in frames[1:]:
        reprompt = {2: Prompt(box=list(box))} if f.index == 4 else None
        if f.index == 5:
            tracker.remove_object(1)
        tracker.update(f.image, prompts=reprompt)
        if f.index == 3:
            tracker.add_object(f.image, points=[[x, y], [5, 5]], labels=[1, 0], obj_id=3)
        got = {o["id"]: _decode(o["rle"]) for o in lines[f.index]["objects"]}
        assert sorted(got) == tracker.objects
        for k, r in tracker.results.items():
            np.testing.assert_array_equal(got[k], r.mask)


def test_two_encode_requests_track_what_one_does_and_the_result_records_the_tuning(clip, tiny_bundle, tmp_path):
    """OpenVINO with the throughput hint and two encode threads: the same objects on every frame,
    the masks of the one-request run (the encoder runs the same graph, two frames at a time)."""
    from slimsam_edge.runtimes import RuntimeTuning

    folder, frames = clip
    x, y = _peak(frames[0].mask(1))
    runs = {}
    for name, tuning in (("one", None), ("two", RuntimeTuning(hint="throughput", encode_requests=2))):
        masks = tmp_path / f"{name}.jsonl"
        runs[name] = run_video(str(folder), tiny_bundle, tmp_path / f"{name}.mp4", targets=[Target(((x, y, 1.0),))],
                               masks=masks, backend="openvino", threads=1, tuning=tuning)
        runs[name]["lines"] = _lines(masks)
    one, two = runs["one"], runs["two"]
    assert one["tuning"] == {"hint": None, "encoder_threads": None, "decoder_threads": None,
                             "encode_requests": 1, "streams": None}
    assert two["tuning"]["hint"] == "throughput" and two["tuning"]["encode_requests"] == 2
    assert two["frames_done"] == FRAMES and [r["frame"] for r in two["lines"]] == list(range(FRAMES))
    for a, b in zip(one["lines"], two["lines"]):
        assert [o["id"] for o in a["objects"]] == [o["id"] for o in b["objects"]]
        for oa, ob in zip(a["objects"], b["objects"]):
            ma, mb = _decode(oa["rle"]), _decode(ob["rle"])
            union = np.logical_or(ma, mb).sum()
            assert union == 0 or np.logical_and(ma, mb).sum() / union >= 0.99


def test_rle_is_pycocotools_encoding(clip, tiny_bundle, tmp_path):
    mask_utils = pytest.importorskip("pycocotools.mask")
    folder, frames = clip
    masks = tmp_path / "m.jsonl"
    run_video(str(folder), tiny_bundle, tmp_path / "o.mp4", targets=[Target(box=(10, 10, 60, 50))],
              masks=masks, max_frames=3, backend="onnxruntime")
    lines = _lines(masks)
    assert len(lines) == 3
    for rec in lines:
        (o,) = rec["objects"]
        m = _decode(o["rle"])
        coco = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert coco["counts"].decode() == o["rle"]["counts"]
        np.testing.assert_array_equal(mask_utils.decode({"size": o["rle"]["size"],
                                                         "counts": o["rle"]["counts"].encode()}).astype(bool), m)


def test_realtime_mode_counts_drops_and_keeps_outputs_consistent(clip, tiny_bundle, tmp_path):
    folder, _ = clip
    out, masks = tmp_path / "rt.mp4", tmp_path / "rt.jsonl"
    result = run_video(str(folder), tiny_bundle, out, targets=[Target(((40, 40, 1.0),))], masks=masks,
                       realtime=True, backend="onnxruntime")
    assert result["realtime"] and result["frames_read"] == FRAMES
    assert result["frames_done"] + result["dropped"] == FRAMES and result["frames_done"] >= 1
    frames = [rec["frame"] for rec in _lines(masks)]
    assert len(frames) == result["frames_done"] and frames == sorted(frames)
    assert frames[0] == 0 and frames[-1] == FRAMES - 1  # the newest frame is never dropped
    assert _count_frames(out) == FRAMES  # dropped frames repeat the previous overlay: the source's timing


def test_everything_mode_segments_each_frame(clip, tiny_bundle, tmp_path):
    folder, _ = clip
    masks = tmp_path / "e.jsonl"
    settings = {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    result = run_video(str(folder), tiny_bundle, tmp_path / "e.mp4", everything=True, everything_settings=settings,
                       masks=masks, max_frames=2, backend="onnxruntime")
    assert result["mode"] == "everything" and result["frames_done"] == 2 and result["objects"] == {}
    lines = _lines(masks)
    assert len(lines) == 2 and all(rec["objects"] for rec in lines)
    for rec in lines:
        areas = [int(_decode(o["rle"]).sum()) for o in rec["objects"]]
        assert [o["id"] for o in rec["objects"]] == list(range(1, len(areas) + 1))
        assert areas == sorted(areas, reverse=True) and {o["state"] for o in rec["objects"]} == {"everything"}


def test_ctrl_c_keeps_the_frames_done_so_far_playable(clip, tiny_bundle, tmp_path, ctrl_c):
    folder, _ = clip
    out, masks = tmp_path / "c.mp4", tmp_path / "c.jsonl"

    def progress(done, total, fps, dropped):
        if done == 3:
            ctrl_c()
            time.sleep(0.2)  # lets the main thread take it before the clip ends (not asserted on)

    result = run_video(str(folder), tiny_bundle, out, targets=[Target(((40, 40, 1.0),))], masks=masks,
                       backend="onnxruntime", progress=progress)
    assert result["interrupted"] and 3 <= result["frames_done"] <= FRAMES
    assert _count_frames(out) == result["frames_done"] == len(_lines(masks))
    assert _leftovers(tmp_path) == [] and not [t for t in threading.enumerate() if t.name.startswith("slimsam-")]


def test_bad_input_is_refused_in_one_line_and_leaves_no_output(clip, tiny_bundle, tmp_path, monkeypatch):
    folder, _ = clip
    out, masks = tmp_path / "o.mp4", tmp_path / "m.jsonl"

    def refused(error, *fragments, **kwargs):
        with pytest.raises(error) as err:
            run_video(kwargs.pop("source", str(folder)), tiny_bundle, kwargs.pop("out", out), masks=masks,
                      backend="onnxruntime", **kwargs)
        message = str(err.value)
        assert "\n" not in message and all(f in message for f in fragments), message
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)

    keep = []
    refused(UsageError, "no prompt given")
    refused(UsageError, "--everything", targets=[Target(((1, 1, 1.0),))], everything=True)
    refused(PromptError, "--point 500,10", "outside the 128x96 frame", targets=[Target(((500, 10, 1.0),), where="--point 500,10")])
    refused(DataError, "nowhere.mp4", source=str(tmp_path / "nowhere.mp4"), targets=[Target(((1, 1, 1.0),))])
    (tmp_path / "file").write_text("")
    keep.append("file")
    refused(UsageError, "--out", "cannot be written", out=tmp_path / "file" / "o.mp4",
            targets=[Target(((1, 1, 1.0),))])

    prompts = tmp_path / "p.json"
    keep.append("p.json")
    prompts.write_text(json.dumps({"prompts": [{"frame": 2, "id": 7, "box": [1, 1, 5, 5]}]}))
    refused(UsageError, "p.json", "unknown object id 7", "objects at that frame: 1", targets=[Target(((1, 1, 1.0),))],
            prompts_file=prompts)
    prompts.write_text(json.dumps({"prompts": [{"frame": 4, "box": [1, 1, 500, 5]}]}))
    refused(PromptError, "prompts[0] (frame 4)", "box corner (500, 5) is outside", prompts_file=prompts)
    prompts.write_text("{not json")
    refused(UsageError, "p.json", "not valid JSON", prompts_file=prompts)

    sizes = tmp_path / "sizes"
    sizes.mkdir()
    keep.append("sizes")
    cv2.imwrite(str(sizes / "a.png"), np.zeros((96, 128, 3), np.uint8))
    cv2.imwrite(str(sizes / "b.png"), np.zeros((90, 128, 3), np.uint8))
    refused(ImageError, "frame 1 is 128x90", source=str(sizes), targets=[Target(((1, 1, 1.0),))])

    # a decoder exported before batched prompts: say to re-export, before any frame
    from slimsam_edge.predictor import EdgePredictor
    from slimsam_edge.runtimes.base import TensorSpec

    original = EdgePredictor.from_bundle.__func__

    class OldDecoder:
        def __init__(self, inner):
            self.inner = inner

        def input_specs(self):
            return {"point_coords": TensorSpec("point_coords", np.dtype(np.float32), (1, "num_points", 2))}

        def __getattr__(self, name):
            return getattr(self.inner, name)

    def old_bundle(cls, *args, **kwargs):
        p = original(cls, *args, **kwargs)
        p.decoder = OldDecoder(p.decoder)
        return p

    monkeypatch.setattr(EdgePredictor, "from_bundle", classmethod(old_bundle))
    refused(BundleError, "re-export", targets=[Target(((1, 1, 1.0),))])


def test_prompts_file_schema_errors_name_the_entry():
    cases = [
        ([], "expected {\"prompts\""),
        ({"prompts": [{"box": [0, 0, 1, 1]}]}, "prompts[0]: no \"frame\""),
        ({"prompts": [{"frame": -1, "box": [0, 0, 1, 1]}]}, "frame must be a whole number >= 0"),
        ({"prompts": [{"frame": 0, "colour": 1}]}, "unknown key 'colour'"),
        ({"prompts": [{"frame": 0}]}, "give a \"point\""),
        ({"prompts": [{"frame": 0, "box": [5, 0, 1, 1]}]}, "x0 < x1"),
        ({"prompts": [{"frame": 0, "point": [1, 2, 0]}]}, "needs a foreground point"),
        ({"prompts": [{"frame": 0, "remove": 1, "id": 1}]}, "\"remove\" stands alone"),
        ({"prompts": [{"frame": 0, "point": ["a", 2]}]}, "must be a number"),
    ]
    for data, fragment in cases:
        with pytest.raises(UsageError) as err:
            parse_prompts(data, "p.json")
        assert fragment in str(err.value) and "\n" not in str(err.value)
    # ids are never reused: a removed id is unknown later, new objects get fresh ids
    entries = parse_prompts({"prompts": [{"frame": 2, "remove": 1}, {"frame": 3, "box": [0, 0, 4, 4]},
                                         {"frame": 1, "id": 1, "box": [0, 0, 4, 4]}]}, "p.json")
    events = plan_prompts([Target(((1, 1, 1.0),))], entries)
    assert [(e.frame, e.action, e.obj_id) for e in events] == [(0, "add", 1), (1, "prompt", 1), (2, "remove", 1),
                                                              (3, "add", 2)]
    with pytest.raises(UsageError, match="unknown object id 1; objects at that frame: 2"):
        plan_prompts([Target(((1, 1, 1.0),))], entries + parse_prompts(
            {"prompts": [{"frame": 4, "id": 1, "point": [1, 1]}]}, "p.json"))


def test_events_falling_due_together_apply_in_order():
    """Frames dropped in real-time mode: events of frames 1..6 all fall due on frame 7."""
    from slimsam_edge.apps.tracker import demo_predictor
    from slimsam_edge.apps.video import TrackStage

    def frame(x):  # white squares on black: the stand-in segmenter takes the bright region clicked
        f = np.zeros((96, 128, 3), np.uint8)
        f[30:50, x:x + 20] = 255
        f[60:80, 90:110] = 255
        return f

    entries = parse_prompts({"prompts": [
        {"frame": 3, "point": [100, 70]},           # object 2 ...
        {"frame": 4, "id": 2, "box": [85, 55, 115, 85]},  # ... re-prompted before it was ever seen
        {"frame": 4, "remove": 1},
        {"frame": 5, "point": [100, 70]},           # object 3, added and removed unseen
        {"frame": 6, "remove": 3},
    ]}, "p.json")
    predictor = demo_predictor()
    stage = TrackStage(predictor, plan_prompts([Target(((20, 40, 1.0),))], entries))
    first = stage(0, frame(10), predictor.encode(frame(10)))
    assert [(o.id, o.state, o.bbox) for o in first] == [(1, "tracking", [10, 30, 20, 20])]
    later = stage(7, frame(14), predictor.encode(frame(14)))
    assert [(o.id, o.bbox) for o in later] == [(2, [90, 60, 20, 20])] and stage.tracker.objects == [2]


def test_overlay_colours_follow_the_object_id():
    from slimsam_edge.apps.video import VideoObject

    img = np.zeros((60, 80, 3), np.uint8)
    a = np.zeros((60, 80), bool)
    a[5:25, 5:25] = True
    one = draw_objects(img, [VideoObject(3, "tracking", 0.9, [5, 5, 20, 20], a)])
    two = draw_objects(img, [VideoObject(1, "tracking", 0.9, [40, 30, 20, 20], a[::-1, ::-1].copy()),
                             VideoObject(3, "tracking", 0.9, [5, 5, 20, 20], a)])
    assert (one[15, 15] == two[15, 15]).all() and one[15, 15].any()
    lost = draw_objects(img, [VideoObject(1, "lost", 0.0, None, np.zeros((60, 80), bool))])
    assert not lost.any()


def test_sam_mini_tracks_a_generated_clip_through_an_mp4(mini_bundle, tmp_path):
    """The whole app on the shipped model: mp4 decode, pipeline, tracker, RLE; every object keeps
    a good mask over the first frames of a generated clip (before any occlusion or exit)."""
    from slimsam_edge.apps.video_io import VideoWriter
    from slimsam_edge.data.synth_video import ProceduralVideo

    video = list(ProceduralVideo(seed=0, frames=40, size=(240, 320), objects=3))[:10]  # a clip's motion spans its length
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, fps=10) as writer:
        for f in video:
            writer.write(f.image)
    targets = [Target(((*_peak(video[0].mask(k)), 1.0),)) for k in (1, 2, 3)]
    masks = tmp_path / "m.jsonl"
    result = run_video(str(clip), mini_bundle, tmp_path / "o.mp4", targets=targets, masks=masks)
    assert result["frames_done"] == 10
    for rec in _lines(masks):
        for o in rec["objects"]:
            pred, gt = _decode(o["rle"]), video[rec["frame"]].mask(o["id"])
            j = (pred & gt).sum() / max((pred | gt).sum(), 1)
            assert o["state"] == "tracking" and j > 0.85, (rec["frame"], o["id"], o["state"], j)
