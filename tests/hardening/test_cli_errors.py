"""The CLI half of issue 20 item 7: each case a user can cause ends in ONE line on stderr and exit
code 2 (or a valid result), nothing half-written, never a hang.

Cases that only show at the file-descriptor level (libpng and ONNX Runtime write to fd 2 from C;
a FIFO blocks ``open``) run the real program in a subprocess; a timeout there only bounds the test.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import assert_one_line_error, photo
from slimsam_edge.cli.app import app

runner = CliRunner()
#: bounds a subprocess that would hang (a FIFO); never a timing assertion
HANG_BOUND_S = 300


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def program(*args, **kwargs) -> subprocess.CompletedProcess:
    """The real program (file descriptors included), without --debug."""
    env = {**os.environ, "SLIMSAM_EDGE_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "slimsam_edge", *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=HANG_BOUND_S, env=env, **kwargs)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    cv2.imwrite(str(path), photo((64, 96), seed=2)[..., ::-1])
    return path


# ---------------------------------------------------------------- --out


def test_out_naming_a_folder_is_one_line(tmp_path, mini_bundle, image):
    (tmp_path / "dir.png").mkdir()
    line = assert_one_line_error(run("segment", image, "--bundle", mini_bundle, "--point", "10,10",
                                     "--out", tmp_path / "dir.png"), "--out", "folder")
    assert "file" in line
    (tmp_path / "dir.json").mkdir()
    assert_one_line_error(run("segment", image, "--bundle", mini_bundle, "--everything", "--points-per-side", "2",
                              "--out", tmp_path / "dir.json"), "--out", "folder")


def test_out_under_a_regular_file_is_one_line(tmp_path, mini_bundle, image):
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(run("segment", image, "--bundle", mini_bundle, "--point", "10,10",
                              "--out", tmp_path / "afile" / "m.png"), "--out", "is a file, not a folder")
    assert_one_line_error(run("data", "procedural", "--out", tmp_path / "afile" / "d", "--count", "1"),
                          "--out", "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "x"


def test_overlay_that_cannot_be_written_leaves_no_mask(tmp_path, mini_bundle, image):
    """The mask and the overlay are written as a pair: neither, or both."""
    (tmp_path / "m_overlay.png").mkdir()  # the overlay's path is taken by a folder
    assert_one_line_error(run("segment", image, "--bundle", mini_bundle, "--point", "10,10",
                              "--out", tmp_path / "m.png"), "m_overlay.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_overlay.png"]


def test_pair_write_fails_midway_leaves_neither(tmp_path, mini_bundle, image, monkeypatch):
    """A failure after the mask's temporary is written (disk full on the overlay) leaves neither."""
    import slimsam_edge.visualize as visualize

    real = visualize.write_png
    calls = []

    def failing(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(path, array)

    monkeypatch.setattr(visualize, "write_png", failing)
    r = run("segment", image, "--bundle", mini_bundle, "--point", "10,10", "--out", tmp_path / "m.png")
    assert_one_line_error(r, "No space left")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- native stderr


def test_bad_png_prints_one_line_not_libpngs(tmp_path, mini_bundle, image):
    data = image.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[:len(data) // 2])
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF  # an IDAT CRC error: "libpng error: IDAT: CRC error"
    (tmp_path / "crc.png").write_bytes(bytes(flipped))
    for bad in (truncated, tmp_path / "crc.png"):
        r = program("segment", bad, "--bundle", mini_bundle, "--point", "10,10", "--out", tmp_path / "m.png")
        assert r.returncode == 2, r.stderr
        assert "decode" in one_line(r.stderr) and "libpng" not in r.stderr
    assert not (tmp_path / "m.png").exists()


def test_onnxruntime_failure_logs_nothing_on_stderr(capfd, mini_bundle):
    """ONNX Runtime logs an ``[E:onnxruntime:...]`` line on fd 2 before raising; the error we print
    says it, so sessions log nothing below FATAL unless --debug."""
    from slimsam_edge.runtimes.registry import open_runner

    r = open_runner(mini_bundle / "onnx" / "mask_decoder_lowres.onnx")
    feed = {"image_embeddings": np.zeros((1, 128, 32, 32), np.float32),
            "point_coords": np.zeros((1, 2, 2), np.float32), "point_labels": np.zeros((1, 3), np.float32),
            "mask_input": np.zeros((1, 1, 128, 128), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    capfd.readouterr()
    with pytest.raises(Exception):
        r.infer(feed)  # point counts disagree: fails inside ONNX Runtime
    assert "onnxruntime" not in capfd.readouterr().err


# ---------------------------------------------------------------- Typer / Click usage errors


@pytest.mark.parametrize("argv", [
    ["segment", "IMG", "--bundle", "B", "--point", "1,1", "--out", "m.png", "--threads", "0"],
    ["segment", "IMG", "--bundle", "B", "--point", "1,1", "--out", "m.png", "--threads", "x"],
    ["segment", "IMG", "--bundle", "B", "--out", "m.png", "--thread", "2"],
    ["segment", "--bundle", "B"],
    ["segment", "IMG", "--bundle", "B", "--out", "m.png", "--backend", "nope"],
    ["bench", "B", "--runs", "0"],
    ["data", "video", "--out", "d", "--frames", "many"],
    ["export", "--out", "o", "--json=yes"],
    ["no-such-command"],
])
def test_usage_errors_are_one_line_exit_2(argv):
    r = run(*argv)
    line = assert_one_line_error(r)
    assert "╭" not in r.output and "Usage:" not in r.output
    assert "--help" in line  # says where to look


def test_help_is_intact():
    r = run("segment", "--help")
    assert r.exit_code == 0 and "--threads" in r.stdout and "Usage" in r.stdout
    r = run()
    assert "Usage" in r.output and "segment" in r.output  # no arguments: the help, as before


# ---------------------------------------------------------------- progress bars


def test_progress_bar_is_not_left_on_stderr_by_an_error(tmp_path, monkeypatch):
    """A bar that started (data procedural keeps its finished bar) is dropped when the work fails."""
    import slimsam_edge.data.procedural as procedural
    from slimsam_edge.errors import DataError

    def failing(out, count, seed, size, progress=None):
        progress(1, count)
        raise DataError("disk said no; free space and rerun")

    monkeypatch.setattr(procedural, "write_procedural", failing)
    r = run("data", "procedural", "--out", tmp_path / "d", "--count", "3")
    assert_one_line_error(r, "disk said no")


# ---------------------------------------------------------------- FIFOs and other non-files


def test_fifo_as_image_is_refused_not_opened(tmp_path, mini_bundle):
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    r = program("segment", fifo, "--bundle", mini_bundle, "--point", "1,1", "--out", tmp_path / "m.png")
    assert r.returncode == 2 and "not a regular file" in one_line(r.stderr), r.stderr


def test_fifo_as_checkpoint_or_prompts_is_refused(tmp_path, mini_bundle):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    r = program("info", fifo)
    assert r.returncode == 2 and "not a regular file" in one_line(r.stderr), r.stderr
    prompts = tmp_path / "prompts.json"
    os.mkfifo(prompts)
    clip = tmp_path / "frames"
    clip.mkdir()
    cv2.imwrite(str(clip / "00000.png"), photo((64, 64), seed=1)[..., ::-1])
    r = program("video", clip, "--bundle", mini_bundle, "--point", "5,5", "--prompts", prompts,
                "--out", tmp_path / "o.mp4")
    assert r.returncode == 2 and "not a regular file" in one_line(r.stderr), r.stderr


# ---------------------------------------------------------------- --json


def test_json_never_prints_nan(tmp_path, mini_bundle, image, monkeypatch):
    import slimsam_edge.apps.segment as segment_app

    def nan_result(image, bundle, out, **kwargs):
        return {"score": float("nan"), "area": 0, "overlay": "o.png", "timings_ms": {"encoder": float("inf")},
                "backend": "onnxruntime", "precision": "fp32"}

    monkeypatch.setattr(segment_app, "segment_file", nan_result)
    r = run("segment", image, "--bundle", mini_bundle, "--point", "1,1", "--out", tmp_path / "m.png", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    assert doc["score"] is None and doc["non_finite"] == {"score": "NaN", "timings_ms/encoder": "Infinity"}


def test_json_stdout_holds_only_the_document(tmp_path, mini_bundle, monkeypatch):
    """A library logging to stdout (NNCF does, at INFO, during an int8 export) goes to stderr in
    --json mode: stdout is exactly one JSON document."""
    import slimsam_edge.bundle as bundle_mod

    early = logging.getLogger("fake_early")  # imported before the command: bound to the process's stdout
    handler = logging.StreamHandler(sys.__stdout__)
    early.addHandler(handler)
    early.setLevel(logging.INFO)
    late = logging.getLogger("fake_nncf")  # imported by the command (as nncf is, by an int8 export)
    late.setLevel(logging.INFO)
    real = bundle_mod.load_bundle

    def load_bundle(*args, **kwargs):
        early.info("INFO:early:Statistics collection")
        late.addHandler(logging.StreamHandler(sys.stdout))
        late.info("INFO:nncf:Statistics collection")
        print("a stray print")
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle_mod, "load_bundle", load_bundle)
    try:
        r = run("info", mini_bundle, "--json")
    finally:
        early.removeHandler(handler)
        late.handlers.clear()
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)
    for line in ("INFO:early:", "INFO:nncf:", "stray print"):
        assert line in r.stderr, r.stderr
    assert handler.stream is sys.__stdout__  # restored
