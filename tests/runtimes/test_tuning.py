"""RuntimeTuning: validation in one line, what each runner gets, and every backend's concurrency
contract (concurrent calls either safe in the backend or serialised by Runner.infer)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from slimsam_edge.errors import UsageError
from slimsam_edge.runtimes import RuntimeTuning, registered_backends
from slimsam_edge.runtimes.base import Runner, TensorSpec
from slimsam_edge.runtimes.registry import get_backend


@pytest.mark.parametrize("kwargs, match", [
    ({"hint": "fast"}, "performance hint 'fast' is not one of latency, throughput, cumulative_throughput"),
    ({"hint": 1}, "is not one of"),
    ({"encoder_threads": -1}, "encoder_threads -1 must be >= 0"),
    ({"decoder_threads": "2"}, "decoder_threads must be a whole number of threads"),
    ({"encode_requests": 0}, "encode_requests must be a whole number from 1 to 16, got 0"),
    ({"encode_requests": 17}, "from 1 to 16"),
    ({"encode_requests": True}, "encode_requests must be a whole number"),
    ({"streams": 0}, "streams must be a whole number from 1 to 16"),
])
def test_bad_values_are_refused_in_one_line(kwargs, match):
    with pytest.raises(UsageError, match=match) as err:
        RuntimeTuning(**kwargs)
    assert "\n" not in str(err.value)


def test_each_graph_gets_its_own_threads_and_only_the_encoder_the_hint_and_requests():
    t = RuntimeTuning(hint="Cumulative_Throughput", encoder_threads=2, encode_requests=3, streams=2)
    assert t.hint == "cumulative_throughput"
    assert t.threads_for("encoder", 4) == 2 and t.threads_for("decoder", 4) == 4  # unset: --threads
    assert t.encoder_extra() == {"performance_hint": "cumulative_throughput", "requests": 3, "num_streams": 2}
    assert t.decoder_extra() == {} and RuntimeTuning().encoder_extra() == {}
    assert RuntimeTuning(**t.to_dict()) == t  # the JSON record rebuilds it


def test_only_backends_with_performance_hints_take_one():
    assert get_backend("openvino").runner.performance_hints == ("latency", "throughput", "cumulative_throughput")
    for name in ("onnxruntime", "tensorrt", "torch"):
        assert get_backend(name).runner.performance_hints == ()


class _Held(Runner):
    """A backend whose _infer records how many calls are inside at once and waits on an event."""

    def __init__(self, concurrent: bool):
        super().__init__("held")
        self.concurrent = concurrent
        self.inside = self.most = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    @property
    def concurrent_infer(self):  # type: ignore[override]
        return self.concurrent

    def _activate(self):
        pass

    def _specs(self):
        spec = TensorSpec("x", np.dtype(np.float32), (1,))
        return {"x": spec}, {"y": spec}

    def _infer(self, feed):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()
        assert self.release.wait(10)
        with self.lock:
            self.inside -= 1
        return {"y": feed["x"] + 1}


@pytest.mark.parametrize("concurrent", [False, True])
def test_runner_infer_serialises_a_backend_unless_it_runs_concurrent_calls(concurrent):
    """Two threads call infer: a backend without concurrent_infer never has both inside _infer
    (the second enters only after the first is released); one with it has both inside."""
    r = _Held(concurrent)
    out = []
    threads = [threading.Thread(target=lambda: out.append(r.infer({"x": np.zeros(1, np.float32)})))
               for _ in range(2)]
    for t in threads:
        t.start()
    assert r.entered.acquire(timeout=10)  # the first call is inside
    if concurrent:
        assert r.entered.acquire(timeout=10)  # ... and so is the second, at the same time
    r.release.set()
    for t in threads:
        t.join(10)
    assert len(out) == 2 and r.most == (2 if concurrent else 1)


def test_single_context_backends_are_serialised_by_runner_infer():
    """TensorRT (one execution context) and torch (one module) rely on Runner.infer's lock; ONNX
    Runtime's session and OpenVINO's request pool take concurrent calls themselves."""
    for name in registered_backends():
        cls = get_backend(name).runner
        expected = name.startswith("onnxruntime") or name == "openvino"
        assert cls.concurrent_infer is expected, name
    assert not get_backend("tensorrt").runner.concurrent_infer and not get_backend("torch").runner.concurrent_infer
