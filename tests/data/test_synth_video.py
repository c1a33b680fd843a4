"""Procedural video: determinism, independent frames, exact labels, the clip's script, meta."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimsam_edge.data.synth_video import MAX_OBJECTS, ProceduralVideo, VideoFrame
from slimsam_edge.errors import UsageError

SIZE = (120, 160)


@pytest.fixture(scope="module")
def clip() -> ProceduralVideo:
    return ProceduralVideo(seed=0, frames=40, size=SIZE, objects=3)


@pytest.fixture(scope="module")
def frames(clip: ProceduralVideo) -> list[VideoFrame]:
    return list(clip)


def test_frames_have_the_promised_types(clip, frames):
    assert len(clip) == len(frames) == 40 and clip.object_ids == [1, 2, 3]
    for i, f in enumerate(frames):
        assert f.index == i
        assert f.image.shape == (*SIZE, 3) and f.image.dtype == np.uint8
        assert f.labels.shape == SIZE and f.labels.dtype == np.uint8
        assert set(np.unique(f.labels)) <= {0, 1, 2, 3}
        assert np.array_equal(f.mask(2), f.labels == 2) and f.mask(2).dtype == bool


def test_same_seed_same_bytes_and_frames_are_independent(clip, frames):
    again = ProceduralVideo(seed=0, frames=40, size=SIZE, objects=3)
    for i in (0, 17, 39):  # random access, in any order, equals sequential iteration
        assert np.array_equal(again[i].image, frames[i].image)
        assert np.array_equal(again[i].labels, frames[i].labels)
    assert np.array_equal(clip[-1].labels, frames[39].labels)
    other = ProceduralVideo(seed=1, frames=40, size=SIZE, objects=3)[0]
    assert not np.array_equal(other.image, frames[0].image)
    with pytest.raises(IndexError):
        clip[40]


def test_objects_move_and_are_distinct_from_the_background(frames):
    f0, f5 = frames[0], frames[5]
    for k in (1, 3):
        a, b = np.argwhere(f0.mask(k)).mean(0), np.argwhere(f5.mask(k)).mean(0)
        assert 0 < np.linalg.norm(a - b) < 40  # moved, smoothly (a few pixels a frame)
    img = f0.image.astype(np.float64)
    bg = img[f0.labels == 0].mean(0)
    for k in (1, 2, 3):
        inner = f0.mask(k)
        assert inner.sum() >= 0.01 * inner.size  # not tiny
        assert np.linalg.norm(img[inner].mean(0) - bg) > 60  # colour far from the background


def test_labels_are_exact_the_object_pixels_differ_from_what_is_behind(frames):
    # label boundaries coincide with colour edges: a labelled pixel's colour is its object's fill,
    # so the mean colour of each label differs clearly from the others
    f = frames[0]
    means = [f.image[f.labels == k].mean(0) for k in (0, 1, 2, 3)]
    for i in range(4):
        for j in range(i):
            assert np.linalg.norm(means[i] - means[j]) > 40


def test_script_object_2_leaves_and_reenters_and_someone_is_occluded(clip, frames):
    meta = clip.meta()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["seed"] == 0 and meta["frames"] == 40 and meta["size"] == list(SIZE) and meta["objects"] == 3
    runs = meta["visible"]["2"]
    assert len(runs) == 2 and runs[0][0] == 0 and runs[1][1] == 39  # leaves, comes back
    for start, end in runs:
        assert all(frames[t].mask(2).any() for t in (start, end))
    gap = range(runs[0][1] + 1, runs[1][0])
    assert len(gap) >= 3 and not any(frames[t].mask(2).any() for t in gap)
    events = [(e["object"], e["event"]) for e in meta["events"]]
    assert (2, "leaves") in events and events.count((2, "enters")) == 2
    assert any(ev == "occluded" for _, ev in events)
    for e in meta["events"]:  # events are in frame order and consistent with the labels
        if e["event"] == "leaves":
            assert not frames[e["frame"]].mask(e["object"]).any()
        if e["event"] == "enters":
            assert frames[e["frame"]].mask(e["object"]).any()
    assert [e["frame"] for e in meta["events"]] == sorted(e["frame"] for e in meta["events"])


def test_occlusion_resolved_by_drawing_order():
    # in the default script the top object (3) sweeps over object 1: somewhere object 1 is cut
    video = ProceduralVideo(seed=2, frames=30, size=SIZE, objects=3)
    occluded = [e for e in video.meta()["events"] if e["event"] == "occluded"]
    assert occluded
    f = video[occluded[0]["frame"]]
    k = occluded[0]["object"]
    assert (f.labels > k).any()  # a higher id is what hides it


def test_one_object_and_many_objects():
    assert ProceduralVideo(seed=3, frames=3, size=64, objects=1)[1].labels.max() == 1
    many = ProceduralVideo(seed=3, frames=2, size=SIZE, objects=MAX_OBJECTS)
    assert many.object_ids == list(range(1, MAX_OBJECTS + 1))
    assert ProceduralVideo(seed=3, frames=1, size=SIZE, objects=2).meta()["frames"] == 1


@pytest.mark.parametrize("kwargs", [
    {"frames": 0}, {"objects": 0}, {"objects": MAX_OBJECTS + 1}, {"seed": -1}, {"size": (16, 320)},
    {"frames": 2.5},
])
def test_bad_arguments_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        ProceduralVideo(**kwargs)

