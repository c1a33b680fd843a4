"""The threaded pipeline: order, end of input, errors in any stage, Ctrl-C, real-time drops, no thread left.

Fake stages only; nothing asserts on wall-clock time (counts, order and threads only).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from slimsam_edge.apps.pipeline import Pipeline
from slimsam_edge.errors import DataError, UsageError


def _frames(n):
    for i in range(n):
        yield i, np.full((4, 6, 3), i % 256, np.uint8)


def _pipeline_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("slimsam-")]


@pytest.fixture(autouse=True)
def _no_thread_left():
    before = set(threading.enumerate())
    yield
    assert _pipeline_threads() == []
    assert set(threading.enumerate()) <= before


def _collect():
    got = []
    return got, lambda index, frame, result: got.append((index, result))


def test_every_frame_mode_delivers_all_frames_in_order_and_ends_on_end_of_input():
    got, sink = _collect()
    progress = []

    def slow_encode(frame):
        time.sleep(0.002)
        return int(frame[0, 0, 0])

    stats = Pipeline(_frames(30), slow_encode, lambda i, f, enc: enc + 1000, sink, queue_size=1).run(
        progress=lambda done, fps, dropped: progress.append((done, dropped)))
    assert got == [(i, i + 1000) for i in range(30)]
    assert (stats.frames_read, stats.frames_done, stats.dropped) == (30, 30, 0)
    assert [d for d, _ in progress] == list(range(1, 31)) and {d for _, d in progress} == {0}
    assert len(stats.latencies_ms) == 30
    d = stats.to_dict()
    assert 0 <= d["latency_ms"]["p50"] <= d["latency_ms"]["p95"] <= d["latency_ms"]["max"]
    assert d["fps"] > 0 and d["seconds"] > 0


def test_realtime_mode_encodes_the_newest_frame_and_counts_the_dropped_ones():
    started, read_all = threading.Event(), threading.Event()
    encoded = []

    def source():
        yield 0, np.zeros((2, 2, 3), np.uint8)
        assert started.wait(10)  # the encoder holds frame 0 while 1..19 arrive
        for i in range(1, 20):
            yield i, np.full((2, 2, 3), i, np.uint8)
        read_all.set()

    def encode(frame):
        index = int(frame[0, 0, 0])
        encoded.append(index)
        if index == 0:
            started.set()
            assert read_all.wait(10)
        return index

    got, sink = _collect()
    stats = Pipeline(source(), encode, lambda i, f, enc: enc, sink, realtime=True).run()
    # 1..18 were replaced by newer frames before the encoder was free; 19 is the newest
    assert encoded == [0, 19]
    assert got == [(0, 0), (19, 19)]
    assert (stats.frames_read, stats.frames_done, stats.dropped) == (20, 2, 18)


def test_realtime_mode_with_a_slow_encoder_drops_frames_but_delivers_in_order():
    def slow_encode(frame):
        time.sleep(0.01)
        return None

    def source():  # a camera: 3 frames per encode
        for i in range(60):
            time.sleep(0.003)
            yield i, np.zeros((2, 2, 3), np.uint8)

    got, sink = _collect()
    stats = Pipeline(source(), slow_encode, lambda i, f, e: i, sink, realtime=True).run()
    indices = [i for i, _ in got]
    assert indices == sorted(indices) and indices[0] == 0 and indices[-1] == 59  # first and newest kept
    assert stats.frames_read == 60 and stats.frames_done + stats.dropped == 60


@pytest.mark.parametrize("stage", ["source", "encode", "process", "sink"])
def test_an_exception_in_any_stage_is_raised_in_run_and_no_thread_is_left(stage):
    def boom(*args):
        raise DataError(f"{stage} failed")

    def source():
        yield from _frames(3)
        if stage == "source":
            boom()
        yield from ((i, np.zeros((4, 6, 3), np.uint8)) for i in range(3, 1000))

    got, sink = _collect()
    stages = {"encode": lambda f: None, "process": lambda i, f, e: None, "sink": sink}
    if stage != "source":
        stages[stage] = boom
    with pytest.raises(DataError, match=f"{stage} failed"):
        Pipeline(source(), stages["encode"], stages["process"], stages["sink"]).run()
    if stage == "source":  # frames read before the error were delivered or discarded, never reordered
        assert [i for i, _ in got] == list(range(len(got)))


def test_the_first_exception_wins_when_later_stages_fail_too():
    def process(i, f, e):
        raise UsageError("first")

    with pytest.raises(UsageError, match="first"):
        Pipeline(_frames(5), lambda f: None, process, lambda *a: None).run()


def test_ctrl_c_stops_every_thread_and_is_raised(ctrl_c):
    got = []

    def sink(index, frame, result):
        got.append(index)
        if len(got) == 3:
            ctrl_c()  # what Ctrl-C does: KeyboardInterrupt in the main thread

    def long():  # ends on its own if the interrupt never came: the test fails instead of hanging
        for i in range(100_000):
            yield i, np.zeros((2, 2, 3), np.uint8)

    with pytest.raises(KeyboardInterrupt):
        Pipeline(long(), lambda f: time.sleep(0.001), lambda i, f, e: None, sink).run()
    assert got[:3] == [0, 1, 2] and got == sorted(got)


def test_stop_from_the_sink_ends_the_run_normally():
    pipe = None
    got = []

    def sink(index, frame, result):
        got.append(index)
        if index == 4:
            pipe.stop()

    pipe = Pipeline(_frames(10_000), lambda f: None, lambda i, f, e: None, sink)
    stats = pipe.run()
    assert got[:5] == [0, 1, 2, 3, 4] and stats.frames_done == len(got) and stats.frames_read < 10_000


def test_a_pipeline_runs_once_and_refuses_a_bad_queue_size():
    pipe = Pipeline(_frames(2), lambda f: None, lambda i, f, e: None, lambda *a: None)
    pipe.run()
    with pytest.raises(UsageError, match="runs once"):
        pipe.run()
    with pytest.raises(UsageError, match="queue_size"):
        Pipeline(_frames(2), lambda f: None, lambda i, f, e: None, lambda *a: None, queue_size=0)


# -- several encode threads -------------------------------------------------------------------


def test_two_encoders_overlap_and_results_stay_in_frame_order():
    """Frame 0's encode cannot finish until frame 1's has started (an event, not a clock): with one
    encode thread this would deadlock; with two it ends, and frame 1 (done first) waits its turn."""
    one_started = threading.Event()
    order = []

    def encode(frame):
        index = int(frame[0, 0, 0])
        if index == 0:
            assert one_started.wait(10), "frame 1's encode never started while frame 0's ran"
        elif index == 1:
            one_started.set()
        order.append(index)
        return index

    got, sink = _collect()
    stats = Pipeline(_frames(12), encode, lambda i, f, enc: enc * 2, sink, encoders=2).run()
    assert order[:2] == [1, 0]  # frame 1 finished encoding before frame 0 ...
    assert got == [(i, i * 2) for i in range(12)]  # ... yet process and sink saw frames in order
    assert (stats.frames_read, stats.frames_done, stats.dropped) == (12, 12, 0)


@pytest.mark.parametrize("encoders", [2, 3])
def test_many_encoders_with_uneven_encode_times_keep_every_frame_in_order(encoders):
    rng = np.random.default_rng(encoders)
    delays = rng.uniform(0, 0.004, 40)
    busy, most = [0], [0]
    lock = threading.Lock()

    def encode(frame):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(delays[int(frame[0, 0, 0])])
        with lock:
            busy[0] -= 1
        return int(frame[0, 0, 0])

    processed = []
    got, sink = _collect()
    Pipeline(_frames(40), encode, lambda i, f, e: processed.append(i) or e, sink, encoders=encoders,
             queue_size=1).run()
    assert processed == list(range(40)) and got == [(i, i) for i in range(40)]
    assert most[0] <= encoders


def test_two_encoders_in_realtime_mode_take_the_newest_frames_and_count_drops():
    """Frame 0 is never dropped; while both encoders are busy newer frames replace older ones
    (counted); what is encoded reaches the sink in capture order."""
    release, read_all = threading.Event(), threading.Event()
    both_busy = threading.Barrier(2)
    encoded = []

    def source():
        yield 0, np.zeros((2, 2, 3), np.uint8)
        yield 1, np.full((2, 2, 3), 1, np.uint8)
        assert release.wait(10)  # both encoders hold frames 0 and 1 while 2..19 arrive
        for i in range(2, 20):
            yield i, np.full((2, 2, 3), i, np.uint8)
        read_all.set()

    def encode(frame):
        index = int(frame[0, 0, 0])
        if index in (0, 1):
            both_busy.wait(10)
            release.set()
            assert read_all.wait(10)
        encoded.append(index)
        return index

    got, sink = _collect()
    stats = Pipeline(source(), encode, lambda i, f, enc: enc, sink, realtime=True, queue_size=1,
                     encoders=2).run()
    assert sorted(encoded) == [0, 1, 19]  # 2..18 were replaced by newer frames before an encoder was free
    assert got == [(0, 0), (1, 1), (19, 19)]
    assert (stats.frames_read, stats.frames_done, stats.dropped) == (20, 3, 17)


def test_an_error_in_one_of_two_encoders_is_raised_and_no_thread_is_left():
    def encode(frame):
        if int(frame[0, 0, 0]) == 5:
            raise DataError("encode of frame 5 failed")
        return None

    got, sink = _collect()
    with pytest.raises(DataError, match="frame 5"):
        Pipeline(_frames(1000), encode, lambda i, f, e: None, sink, encoders=2).run()
    assert [i for i, _ in got] == list(range(len(got))) and len(got) <= 5  # never past the failed frame


def test_ctrl_c_with_two_encoders_stops_every_thread(ctrl_c):
    got = []

    def sink(index, frame, result):
        got.append(index)
        if len(got) == 3:
            ctrl_c()

    def long():
        for i in range(100_000):
            yield i, np.zeros((2, 2, 3), np.uint8)

    with pytest.raises(KeyboardInterrupt):
        Pipeline(long(), lambda f: time.sleep(0.001), lambda i, f, e: None, sink, encoders=2).run()
    assert got[:3] == [0, 1, 2] and got == sorted(got)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_bad_encoder_count_is_refused(bad):
    with pytest.raises(UsageError, match="encoders must be a whole number >= 1"):
        Pipeline(_frames(2), lambda f: None, lambda i, f, e: None, lambda *a: None, encoders=bad)


def test_the_camera_app_example_runs_headless_on_a_clip(mini_bundle, tmp_path):
    """examples/camera_app.py (docs/embedding.md's app) on a generated clip with two clicks: it
    prints both objects on the first frame, each state valid, and the pipeline's stats at the end."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    from slimsam_edge.apps.tracker import STATES, interior_point
    from slimsam_edge.data.synth_video import ProceduralVideo, write_video_dataset

    video = ProceduralVideo(seed=3, frames=12)
    write_video_dataset(video, tmp_path / "clip")
    first = video[0]
    clicks = [f"{x:.0f},{y:.0f}" for x, y in (interior_point(first.mask(k)) for k in (1, 2))]
    example = Path(__file__).parents[2] / "examples" / "camera_app.py"
    run = subprocess.run([sys.executable, str(example), str(mini_bundle), str(tmp_path / "clip" / "video.mp4"),
                          "--point", clicks[0], "--point", clicks[1]],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    index, states = lines[0].split(" ", 1)
    states = ast.literal_eval(states)
    assert index == "0" and sorted(states) == [1, 2]
    assert all(state in STATES for state, _score, _bbox in states.values())
    stats = ast.literal_eval(lines[-1])
    assert stats["frames_read"] == 12 and stats["frames_done"] + stats["dropped"] == 12
    assert stats["frames_done"] == len(lines) - 1
