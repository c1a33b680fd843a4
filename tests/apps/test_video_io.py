"""Video sources (file, folder, glob, camera, URL) and atomic, playable sinks (mp4, JSON lines)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from slimsam_edge.apps.video_io import (
    CameraSource, ImagesSource, JsonlWriter, StreamSource, VideoFileSource, VideoWriter, open_source, paced,
)
from slimsam_edge.errors import DataError, ImageError, UsageError


def _one_line(err, *fragments):
    message = str(err)
    assert "\n" not in message and all(f in message for f in fragments), message


def _frame(i, h=48, w=64):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = 20 * i  # red channel encodes the index (RGB)
    img[: h // 2, :, 2] = 200
    return img


def _write_mp4(path, n, fps=12.0, size=(48, 64)):
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        writer.write(_frame(i, h, w)[..., ::-1])
    writer.release()
    return path


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_file_frames_are_rgb_uint8_numbered_in_order_with_the_fps(tmp_path):
    path = _write_mp4(tmp_path / "clip.mp4", 6)
    with open_source(str(path)) as src:
        assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(12.0)
        frames = list(src)
    assert [i for i, _ in frames] == list(range(6))
    first = frames[0][1]
    assert first.dtype == np.uint8 and first.shape == (48, 64, 3)
    assert first[5, 5, 2] > 150 and first[40, 5, 2] < 50  # blue on top: channels came back as RGB
    assert [int(round(f[30, 30, 0] / 20)) for _, f in frames] == list(range(6))


def test_folder_glob_and_single_image_sources(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), _frame(i)[..., ::-1])
    (tmp_path / "notes.txt").write_text("not a frame")
    for spec in (str(tmp_path), str(tmp_path / "f*.png")):
        with open_source(spec) as src:
            assert isinstance(src, ImagesSource) and src.fps is None
            got = [(i, int(f[30, 30, 0])) for i, f in src]
        assert got == [(0, 0), (1, 20), (2, 40)]
    with open_source(str(tmp_path / "f001.png")) as src:
        assert [int(f[30, 30, 0]) for _, f in src] == [20]


def test_frames_changing_size_mid_stream_are_refused_in_one_line(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _frame(0))
    cv2.imwrite(str(tmp_path / "b.png"), _frame(1, 40, 64))
    with open_source(str(tmp_path)) as src, pytest.raises(ImageError) as err:
        list(src)
    _one_line(err.value, "frame 1 is 64x40", "earlier frames 64x48")


def test_live_sources_and_pacing_of_files():
    assert CameraSource.live and StreamSource.live and not VideoFileSource.live and not ImagesSource.live
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    times = [now[0] for _ in paced(range(4), 20, clock=lambda: now[0], sleep=sleep)]
    assert times == pytest.approx([0.0, 0.05, 0.1, 0.15]) and len(sleeps) == 3  # 20 fps, like a camera
    with pytest.raises(UsageError, match="fps"):
        list(paced(range(2), 0))


@pytest.mark.parametrize("spec, kind, words", [
    ("99", CameraSource, ("camera 99 cannot be opened",)),
    ("http://127.0.0.1:9/none.mp4", StreamSource, ("stream http://127.0.0.1:9/none.mp4 cannot be opened",)),
])
def test_camera_and_stream_that_do_not_open_are_refused_naming_them(spec, kind, words):
    assert kind.matches(spec)
    with pytest.raises(DataError) as err:
        open_source(spec)
    _one_line(err.value, *words)


def test_missing_empty_and_broken_sources_are_refused_naming_them(tmp_path):
    with pytest.raises(DataError) as err:
        open_source(str(tmp_path / "nothing.mp4"))
    _one_line(err.value, "nothing.mp4 not found", "camera index")
    with pytest.raises(DataError) as err:
        open_source(str(tmp_path / "*.png"))
    _one_line(err.value, "matches no image")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        open_source(str(tmp_path / "empty"))
    _one_line(err.value, "no images")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError) as err:
        list(open_source(str(broken)))
    _one_line(err.value, "broken.mp4")


def test_video_writer_renames_on_close_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "sub" / "out.mp4"
    writer = VideoWriter(out, fps=10)
    assert not out.exists() and writer.tmp.parent == out.parent
    for i in range(7):
        writer.write(_frame(i))
    assert not out.exists()
    assert writer.close() == out
    assert _count_frames(out) == 7 and list(out.parent.iterdir()) == [out]


def test_video_closed_early_by_ctrl_c_is_playable_with_the_frames_so_far(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, fps=10) as writer:
            for i in range(100):
                writer.write(_frame(i))
                if i == 4:
                    raise KeyboardInterrupt
    assert _count_frames(out) == 5
    with open_source(str(out)) as src:
        assert [int(round(f[30, 30, 0] / 20)) for _, f in src] == list(range(5))


def test_a_video_closed_before_any_frame_is_not_written(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, fps=10):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with JsonlWriter(tmp_path / "m.jsonl") as lines:
        pass
    assert lines.close() == tmp_path / "m.jsonl" and (tmp_path / "m.jsonl").read_text() == ""


def test_writers_abort_on_an_error_and_keep_the_previous_file(tmp_path):
    out, masks = tmp_path / "out.mp4", tmp_path / "m.jsonl"
    out.write_bytes(b"previous")
    masks.write_text("previous\n")
    with pytest.raises(RuntimeError):
        with VideoWriter(out, fps=10) as video, JsonlWriter(masks) as lines:
            video.write(_frame(0))
            lines.write({"frame": 0})
            raise RuntimeError("stage failed")
    assert out.read_bytes() == b"previous" and masks.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "out.mp4"]


def test_jsonl_writer_keeps_lines_so_far_on_ctrl_c(tmp_path):
    path = tmp_path / "masks.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with JsonlWriter(path) as out:
            out.write({"frame": 0, "objects": []})
            out.write({"frame": 1, "objects": [{"id": 1}]})
            raise KeyboardInterrupt
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [0, 1]


def test_unwritable_outputs_are_refused_before_any_frame(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError) as err:
        VideoWriter(blocker / "out.mp4", fps=10)
    _one_line(err.value, "--out", "cannot be written", "is a file")
    with pytest.raises(UsageError) as err:
        JsonlWriter(tmp_path)
    _one_line(err.value, "--masks", "is a folder")
    with pytest.raises(UsageError) as err:
        VideoWriter(tmp_path / "out.avi", fps=10)
    _one_line(err.value, "must end in .mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
