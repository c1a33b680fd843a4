"""Crashes at any moment (issue 20, item 5): a process SIGKILLed while it writes leaves every output
whole or absent, its temporaries are swept by the next write, and compress resumes bit-identically.

The kills are cued, not timed: ``SLIMSAM_EDGE_KILL_AT=<name>[:<n>]`` (:data:`slimsam_edge.fsutil.KILL_AT_ENV`)
makes the command SIGKILL itself when the n-th atomic write of ``<name>`` is complete but not yet
renamed into place — the worst moment. ``scripts/kill_points.py`` adds >= 5 random kills per command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slimsam_edge.fsutil import KILL_AT_ENV, atomic_dir, atomic_path, sweep_temporaries, write_bytes_atomic
from slimsam_edge.research.kill_points import check_png, cli, temporaries

ROOT = Path(__file__).resolve().parents[2]


def _env(cue: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if cue:
        env[KILL_AT_ENV] = cue
    return env


def _run(argv: list, cue: str | None = None) -> subprocess.CompletedProcess:
    # the timeout only bounds the test; a cued kill ends the command at once
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=_env(cue), timeout=600)


def _write_in_child(dest: Path, data: bytes, cue: str) -> int:
    code = f"from slimsam_edge.fsutil import write_bytes_atomic; write_bytes_atomic({str(dest)!r}, {data!r})"
    return _run([sys.executable, "-c", code], cue).returncode


# --- fsutil: temporaries of a killed writer ----------------------------------------------------------

def test_a_file_write_killed_before_its_rename_leaves_the_old_file_and_the_next_write_sweeps(tmp_path):
    dest = tmp_path / "out.png"
    write_bytes_atomic(dest, b"old")
    assert _write_in_child(dest, b"new", cue="out.png") == -signal.SIGKILL
    assert dest.read_bytes() == b"old"
    assert len(temporaries(tmp_path)) == 1  # the killed writer's whole-looking temporary, hidden, named .tmp
    assert _write_in_child(dest, b"newer", cue="other") == 0  # the next run writing it sweeps it
    assert dest.read_bytes() == b"newer" and temporaries(tmp_path) == []


def test_the_cue_counts_writes_of_that_name(tmp_path):
    code = ("from slimsam_edge.fsutil import write_text_atomic as w\n"
            f"for i in range(3): w({str(tmp_path / 'c.txt')!r}, str(i))")
    assert _run([sys.executable, "-c", code], cue="c.txt:2").returncode == -signal.SIGKILL
    assert (tmp_path / "c.txt").read_text() == "0"
    assert _run([sys.executable, "-c", code], cue="other.txt").returncode == 0
    assert (tmp_path / "c.txt").read_text() == "2" and temporaries(tmp_path) == []


def test_a_live_writers_temporary_is_never_swept(tmp_path):
    dest = tmp_path / "x.bin"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"being written")
        assert sweep_temporaries(dest) == [] and tmp.exists()
        with atomic_dir(tmp_path / "d") as d:  # another writer beside it sweeps only its own name
            assert sweep_temporaries(tmp_path / "d") == [] and d.is_dir() and tmp.exists()
    assert dest.read_bytes() == b"being written" and temporaries(tmp_path) == []


def test_a_folder_replaced_under_a_kill_stays_whole_and_the_swap_leaves_nothing(tmp_path):
    dest = tmp_path / "bundle"
    with atomic_dir(dest) as d:
        (d / "a").write_text("old")
    code = ("from slimsam_edge.fsutil import atomic_dir\n"
            f"with atomic_dir({str(dest)!r}) as d: (d / 'a').write_text('new')")
    assert _run([sys.executable, "-c", code], cue="bundle").returncode == -signal.SIGKILL
    assert (dest / "a").read_text() == "old" and len(temporaries(tmp_path)) == 1
    assert _run([sys.executable, "-c", code]).returncode == 0
    assert (dest / "a").read_text() == "new" and temporaries(tmp_path) == []  # swapped, old copy removed


# --- the commands -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    import cv2

    from helpers import photo

    path = tmp_path_factory.mktemp("img") / "photo.png"
    cv2.imwrite(str(path), photo((120, 160))[..., ::-1])
    return path


def test_segment_killed_between_its_two_pngs(tmp_path, mini_bundle, image):
    mask, overlay = tmp_path / "m.png", tmp_path / "m_overlay.png"
    args = cli("segment", str(image), "--bundle", str(mini_bundle), "--out", str(mask), "--point", "80,60",
               "--backend", "onnxruntime", "--threads", "1")
    assert _run(args, cue="m_overlay.png").returncode == -signal.SIGKILL
    assert not mask.exists() and not overlay.exists()  # the pair is renamed only when both are whole
    res = _run(args)
    assert res.returncode == 0, res.stderr
    assert check_png(mask) is None and check_png(overlay) is None and temporaries(tmp_path) == []


def test_bench_out_killed_at_its_write_keeps_the_earlier_report(tmp_path, mini_bundle):
    out = tmp_path / "bench.json"
    out.write_text('{"earlier": true}')
    args = cli("bench", str(mini_bundle), "--out", str(out), "--backend", "onnxruntime", "--runs", "1",
               "--warmup", "0", "--prompts", "1", "--image-size", "64x64", "--threads", "1", "--repeats", "1",
               "--no-peak", "--no-accuracy", "--energy", "none", "--json")
    assert _run(args, cue="bench.json").returncode == -signal.SIGKILL
    assert json.loads(out.read_text()) == {"earlier": True}
    assert _run(args).returncode == 0
    assert "earlier" not in json.loads(out.read_text()) and temporaries(tmp_path) == []


def test_compress_killed_while_checkpointing_resumes_to_bit_identical_weights(tmp_path, tiny_checkpoint):
    from slimsam_edge.research.kill_points import _weights_equal

    def args(out):
        return cli("compress", "--teacher", str(tiny_checkpoint), "--ratio", "0.5", "--steps", "2", "--images", "4",
                   "--importance-images", "2", "--eval-images", "1", "--val-images", "1", "--val-every", "1",
                   "--checkpoint-every", "1", "--batch", "1", "--threads", "1", "--device", "cpu", "--out", str(out))

    assert _run(args(tmp_path / "ref")).returncode == 0
    # phase 1's first checkpoint is killed before its rename: phase 0's last one stays, whole
    assert _run(args(tmp_path / "run"), cue="checkpoint.pt:3").returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert temporaries(tmp_path / "run")
    res = _run(args(tmp_path / "run") + ["--resume"])
    assert res.returncode == 0, res.stderr
    assert _weights_equal(tmp_path / "ref" / "model.safetensors", tmp_path / "run" / "model.safetensors")
    assert temporaries(tmp_path / "run") == []


def test_a_killed_bench_leaves_no_benchmark_running(tmp_path, mini_bundle):
    """The benchmark worker dies with the bench process that started it (found by scripts/kill_points.py:
    5 of 6 killed benches left their worker measuring on)."""
    import time

    from slimsam_edge.research.kill_points import _session_pids

    argv = cli("bench", str(mini_bundle), "--out", str(tmp_path / "b.json"), "--backend", "onnxruntime",
               "--runs", "100000", "--warmup", "0", "--prompts", "1", "--image-size", "64x64", "--threads", "1",
               "--no-peak", "--no-accuracy", "--energy", "none")
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def worker_pids():
        found = []
        for pid in _session_pids(proc.pid):
            try:
                if b"slimsam_edge.bench.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found

    try:
        deadline = time.monotonic() + 600  # bounds the test only: waits for the worker to start
        while not worker_pids() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker_pids(), "the benchmark worker never started"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 120  # bounds the test only: a worker that lives on fails here
        while worker_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker_pids() == []
    finally:
        for pid in _session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
