"""The OpenVINO runner's tuning: performance hint (validated), NUM_STREAMS, the infer-request pool
(concurrent calls each on their own request; more callers wait), what the compiled model chose in
its notes, and the static axis-0 compiles staying correct from several threads.

Concurrency is shown with events and barriers around the real requests, never with a clock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from slimsam_edge.errors import RunnerError, UsageError
from slimsam_edge.runtimes import RunnerOptions, open_runner

ov = pytest.importorskip("openvino")


def _affine() -> "ov.Model":
    """y = x * 2 + 1, x: float32 [batch, 3] (axis 0 dynamic, as the low-res decoder's prompt axis)."""
    import openvino.opset13 as op

    x = op.parameter([-1, 3], np.float32, name="x")
    y = op.add(op.multiply(x, op.constant(np.float32(2))), op.constant(np.float32(1)))
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x], "affine")


def _runner(**extra):
    threads = extra.pop("threads", 1)
    return open_runner(_affine(), backend="openvino", options=RunnerOptions(threads=threads, extra=extra))


class _Spy:
    """Wraps one infer request: counts the calls inside ``infer`` at once and can hold them."""

    def __init__(self, request, state):
        self._request, self._state = request, state

    def infer(self, feed):
        s = self._state
        with s["lock"]:
            s["inside"] += 1
            s["most"] = max(s["most"], s["inside"])
            s["requests"].add(id(self._request))
        try:
            if s.get("barrier") is not None:
                s["barrier"].wait(10)
            if s.get("hold") is not None:
                s["entered"].set()
                assert s["hold"].wait(10)
            return self._request.infer(feed)
        finally:
            with s["lock"]:
                s["inside"] -= 1

    def __getattr__(self, name):
        return getattr(self._request, name)


def _spy(runner, **state):
    """Spy on the dynamic requests of every slot (open the runner with ``static_axis0=False``)."""
    state = {"lock": threading.Lock(), "inside": 0, "most": 0, "requests": set(), **state}
    for slot in runner._pool._slots:
        slot.request = _Spy(slot.request, state)
    return state


def _run_threads(n, target):
    errors = []

    def guarded(k):
        try:
            target(k)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("bad, match", [
    ({"performance_hint": "fast"}, "openvino: performance hint 'fast' is not one of latency, throughput, cumulative_throughput"),
    ({"performance_hint": 3}, "is not one of latency"),
    ({"requests": 0}, "openvino: requests must be a whole number from 1 to 16, got 0"),
    ({"requests": "2"}, "requests must be a whole number"),
    ({"num_streams": -1}, "openvino: num_streams must be a whole number from 1 to 16"),
])
def test_bad_hint_requests_or_streams_are_refused_in_one_line_before_any_compile(bad, match):
    with pytest.raises(UsageError, match=match) as err:
        _runner(**bad)
    assert "\n" not in str(err.value)


def test_the_notes_record_what_the_compiled_model_uses():
    with _runner() as r:
        note = r.notes[0]
        assert "PERFORMANCE_HINT=LATENCY" in note and "NUM_STREAMS=1" in note
        assert "INFERENCE_NUM_THREADS=1" in note and "OPTIMAL_NUMBER_OF_INFER_REQUESTS=1" in note
        assert "infer requests: 1" in note
    with _runner(performance_hint="THROUGHPUT", num_streams=2, requests=2, threads=2) as r:
        note = r.notes[0]
        assert "PERFORMANCE_HINT=THROUGHPUT" in note and "NUM_STREAMS=2" in note
        assert "OPTIMAL_NUMBER_OF_INFER_REQUESTS=2" in note and "infer requests: 2" in note
    with _runner(performance_hint="cumulative_throughput") as r:
        assert "PERFORMANCE_HINT=CUMULATIVE_THROUGHPUT" in r.notes[0]


def test_two_requests_run_two_calls_at_once_each_on_its_own_request():
    """A barrier of two inside the requests' infer: both calls must be inside at the same time
    (with one request the second would wait for the first, and the barrier would break)."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with _runner(requests=2, static_axis0=False) as r:
        state = _spy(r, barrier=threading.Barrier(2))
        results = {}
        _run_threads(2, lambda k: results.__setitem__(k, r.infer({"x": x + k})["y"]))
        assert state["most"] == 2 and len(state["requests"]) == 2
        for k in range(2):
            np.testing.assert_allclose(results[k], (x + k) * 2 + 1)


@pytest.mark.parametrize("requests", [1, 2])
def test_more_callers_than_requests_wait_for_a_free_one_and_get_their_own_answer(requests):
    rng = np.random.default_rng(requests)
    feeds = [rng.standard_normal((1 + k % 3, 3)).astype(np.float32) for k in range(12)]
    got: dict[int, np.ndarray] = {}
    with _runner(requests=requests, static_axis0=False) as r:  # every call on a spied request
        state = _spy(r)

        def call(k):
            for j in range(k, len(feeds), 6):  # six threads, two feeds each
                got[j] = r.infer({"x": feeds[j]})["y"]

        _run_threads(6, call)
        assert 1 <= state["most"] <= requests
        assert r._pool.free == requests  # every request given back
    for j, feed in enumerate(feeds):
        np.testing.assert_allclose(got[j], feed * 2 + 1, rtol=1e-6)


def test_static_axis0_compiles_stay_correct_from_several_threads(tiny_bundle: Path):
    """The low-res decoder with two requests, from four threads and prompt counts 1..3 (static
    compiles made on the second sight of a size, one request of each per slot): every answer is
    the one-thread dynamic graph's."""
    from slimsam_edge.bundle import load_bundle

    b = load_bundle(tiny_bundle)
    path = b.path_of(b.find("mask_decoder_lowres", backend="openvino", precision="fp32"))
    g = b.manifest.image_size // 16
    rng = np.random.default_rng(0)

    def feed(n: int, emb_shape) -> dict[str, np.ndarray]:
        return {"point_coords": rng.uniform(0, 60, (n, 2, 2)).astype(np.float32),
                "point_labels": np.tile(np.array([[1.0, 0.0]], np.float32), (n, 1)),
                "mask_input": np.zeros((n, 1, 4 * g, 4 * g), np.float32),
                "has_mask_input": np.zeros(n, np.float32),
                "image_embeddings": rng.standard_normal(emb_shape).astype(np.float32)}

    plain_opts = RunnerOptions(threads=1, extra={"static_axis0": False})
    pooled_opts = RunnerOptions(threads=1, extra={"requests": 2})
    with open_runner(path, backend="openvino", options=plain_opts) as plain, \
            open_runner(path, backend="openvino", options=pooled_opts) as pooled:
        emb = plain.input_specs()["image_embeddings"].shape
        feeds = [feed(1 + k % 3, emb) for k in range(12)]
        want = [plain.infer(f) for f in feeds]
        got: dict[int, dict] = {}
        _run_threads(4, lambda t: [got.__setitem__(j, pooled.infer(feeds[j])) for j in range(t, 12, 4)])
        assert sorted(pooled._static) == [(1, False), (2, False), (3, False)]
        for j in range(12):
            for name in want[j]:
                np.testing.assert_allclose(got[j][name], want[j][name], rtol=1e-4, atol=1e-4)


def test_deactivate_waits_for_the_calls_in_flight_and_a_later_call_reactivates():
    x = np.ones((1, 3), np.float32)
    r = _runner(requests=2, static_axis0=False).activate()
    state = _spy(r, hold=threading.Event(), entered=threading.Event())
    done = []
    call = threading.Thread(target=lambda: done.append(r.infer({"x": x})["y"]))
    call.start()
    assert state["entered"].wait(10)
    closing = threading.Thread(target=r.deactivate)
    closing.start()
    closing.join(0.2)  # may only end early if deactivate did not wait (it must not)
    assert closing.is_alive() and r.is_active
    state["hold"].set()
    call.join(10)
    closing.join(10)
    assert not closing.is_alive() and not r.is_active
    np.testing.assert_allclose(done[0], x * 2 + 1)
    np.testing.assert_allclose(r.infer({"x": x})["y"], x * 2 + 1)  # activates again, fresh pool
    assert r._pool.free == 2
    r.deactivate()


def test_a_closed_pool_refuses_a_waiting_caller_in_one_line_and_waits_for_the_holder():
    from slimsam_edge.runtimes.openvino.runner import RequestPool

    pool = RequestPool(["only"])
    held = pool.take()
    errors = []
    waiting = threading.Event()

    def waiter():
        waiting.set()
        try:
            pool.take()
        except RunnerError as err:
            errors.append(str(err))

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(10)
    closer = threading.Thread(target=pool.close)
    closer.start()
    t.join(10)  # refused as soon as the close began, though the request is still held
    assert errors == ["openvino: the runner was closed while a call waited for an infer request"]
    closer.join(0.2)  # may only end early if close did not wait for the holder (it must not)
    assert closer.is_alive()
    pool.give(held)
    closer.join(10)
    assert not closer.is_alive() and pool.free == 1


def test_fold_zeros_runs_prompts_without_a_mask_on_a_compile_without_the_mask_branch(tiny_bundle: Path):
    """``fold_zeros`` (what the predictor gives the decoder): prompts whose mask inputs are all zero
    run on a static compile where those inputs are constants (fewer inputs, the mask branch folded
    away), with the dynamic graph's answers; a prompt with a mask input, and a graph without those
    inputs, keep the ordinary compiles; a malformed value is one line."""
    from slimsam_edge.bundle import load_bundle
    from slimsam_edge.predictor import MASK_FEEDS

    b = load_bundle(tiny_bundle)
    path = b.path_of(b.find("mask_decoder_lowres", backend="openvino", precision="fp32"))
    g = b.manifest.image_size // 16
    rng = np.random.default_rng(5)

    def feed(n: int, emb_shape, with_mask: bool) -> dict[str, np.ndarray]:
        mask = rng.standard_normal((n, 1, 4 * g, 4 * g)).astype(np.float32) * with_mask
        return {"point_coords": rng.uniform(0, 60, (n, 2, 2)).astype(np.float32),
                "point_labels": np.tile(np.array([[1.0, -1.0]], np.float32), (n, 1)),
                "mask_input": mask, "has_mask_input": np.full(n, float(with_mask), np.float32),
                "image_embeddings": rng.standard_normal(emb_shape).astype(np.float32)}

    plain_opts = RunnerOptions(threads=1, extra={"static_axis0": False})
    fold_opts = RunnerOptions(threads=1, extra={"fold_zeros": MASK_FEEDS})
    with open_runner(path, backend="openvino", options=plain_opts) as plain, \
            open_runner(path, backend="openvino", options=fold_opts) as fold:
        assert "inputs mask_input, has_mask_input folded to constants when fed zeros" in fold.notes
        folded = fold._static[(1, True)]
        assert {fold._name(p, "") for p in folded.inputs} == {"image_embeddings", "point_coords", "point_labels"}
        emb = plain.input_specs()["image_embeddings"].shape
        feeds = [feed(1, emb, False), feed(1, emb, True), feed(3, emb, False), feed(3, emb, False), feed(3, emb, True)]
        for f in feeds:
            got, want = fold.infer(f), plain.infer(f)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
        assert set(fold._static) == {(1, False), (1, True), (3, True)}  # 3 with a mask: seen once, dynamic
    with _runner(fold_zeros=list(MASK_FEEDS)) as r:  # a graph without those inputs: nothing to fold
        np.testing.assert_allclose(r.infer({"x": np.ones((1, 3), np.float32)})["y"], 3.0)
        assert list(r._static) == [(1, False)] and not any("folded" in n for n in r.notes)
    with pytest.raises(UsageError, match="fold_zeros must be a list of input names"):
        _runner(fold_zeros="mask_input")
