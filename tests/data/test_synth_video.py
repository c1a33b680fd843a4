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



def test_write_and_read_back_a_dataset(tmp_path, clip):
    import cv2

    from slimsam_edge.data.synth_video import VideoDataset, write_video_dataset

    short = ProceduralVideo(seed=0, frames=6, size=SIZE, objects=3)
    calls = []
    summary = write_video_dataset(short, tmp_path / "clip", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert summary["frames"] == 6 and summary["size"] == list(SIZE) and summary["objects"] == 3
    out = tmp_path / "clip"
    assert sorted(p.name for p in out.iterdir()) == ["frames", "masks", "meta.json", "video.mp4"]
    assert summary["mp4"] == str(out / "video.mp4")
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    ds = VideoDataset(out)
    assert len(ds) == 6 and ds.object_ids == [1, 2, 3] and ds.meta() == short.meta()
    for original, back in zip(short, ds):  # PNG is lossless
        assert back.index == original.index
        assert np.array_equal(back.image, original.image) and np.array_equal(back.labels, original.labels)
    assert np.array_equal(ds[-1].labels, short[5].labels)
    # rewriting replaces the dataset (atomically); an unrelated folder is refused
    write_video_dataset(ProceduralVideo(seed=1, frames=2, size=SIZE, objects=1), out, mp4=False)
    assert len(VideoDataset(out)) == 2 and not (out / "video.mp4").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a video dataset"):
        write_video_dataset(short, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_malformed_dataset_folders_are_one_line_data_errors(tmp_path):
    from slimsam_edge.data.synth_video import VideoDataset, write_video_dataset
    from slimsam_edge.errors import DataError

    out = tmp_path / "clip"
    write_video_dataset(ProceduralVideo(seed=0, frames=3, size=64, objects=2), out, mp4=False)

    def fails(fragment: str, read: int | None = None) -> None:
        with pytest.raises(DataError) as err:
            ds = VideoDataset(out)
            if read is not None:
                ds[read]
        assert fragment in str(err.value) and "\n" not in str(err.value)

    (out / "masks" / "00001.png").write_bytes(b"not a png")
    fails("masks/00001.png", read=1)
    (out / "masks" / "00001.png").unlink()
    fails("masks/00001.png")
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "size": "big"}))
    fails("meta.json")
    (out / "meta.json").write_text("{")
    fails("meta.json")
    (out / "meta.json").unlink()
    fails("meta.json")
    with pytest.raises(DataError, match="not a folder"):
        VideoDataset(tmp_path / "nowhere")


def test_dataset_frame_of_the_wrong_size(tmp_path):
    import cv2

    from slimsam_edge.data.synth_video import VideoDataset, write_video_dataset
    from slimsam_edge.errors import DataError

    out = tmp_path / "clip"
    write_video_dataset(ProceduralVideo(seed=0, frames=2, size=64, objects=1), out, mp4=False)
    cv2.imwrite(str(out / "frames" / "00000.png"), np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"frames/00000.png: uint8 32x64x3 image, expected uint8 64x64x3"):
        VideoDataset(out)[0]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("frames, objects", [(24, 2), (60, 3)])
def test_object_2_leaves_and_comes_back_for_any_seed(seed, frames, objects):
    meta = ProceduralVideo(seed=seed, frames=frames, size=(240, 320), objects=objects).meta()
    runs = meta["visible"]["2"]
    assert len(runs) == 2 and runs[0][0] == 0 and runs[1][1] == frames - 1
    moves = [e["event"] for e in meta["events"] if e["object"] == 2 and e["event"] in ("enters", "leaves")]
    assert moves == ["enters", "leaves", "enters"]
    assert all(meta["visible"][str(k)][0][0] == 0 for k in range(1, objects + 1))  # all there at the start
