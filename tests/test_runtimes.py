"""Runners on tiny ONNX graphs: onnxruntime and OpenVINO on CPU; TensorRT only where installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slimsam_edge.errors import (
    BackendUnavailableError,
    BundleError,
    RunnerError,
    UnsupportedOnThisMachineError,
    UsageError,
)
from slimsam_edge.runtimes import RunnerOptions, TensorSpec, open_runner, registered_backends, runner_class

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

ONE_THREAD = RunnerOptions(threads=1)


def _save(graph: "onnx.GraphProto", path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def affine_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """y = x * 2 + 1 with x: float32 [batch, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                     helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    return _save(graph, tmp_path_factory.mktemp("affine") / "affine.onnx")


@pytest.fixture(scope="module")
def two_input_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """y = x + float(idx)[:, None] (float32 [n, 4]); k = idx + 1 (int64 [n])."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["idx"], ["idx_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["idx_f", "axes"], ["idx_col"]),
            helper.make_node("Add", ["x", "idx_col"], ["y"]),
            helper.make_node("Add", ["idx", "one"], ["k"]),
        ],
        "two_inputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("k", TensorProto.INT64, ["n"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("one", TensorProto.INT64, [], [1])],
    )
    return _save(graph, tmp_path_factory.mktemp("two") / "two.onnx")


@pytest.fixture(scope="module")
def affine_ir(affine_onnx: Path) -> Path:
    ov = pytest.importorskip("openvino")
    xml = affine_onnx.with_name("affine_ir.xml")
    ov.save_model(ov.convert_model(str(affine_onnx)), str(xml))
    return xml


def _two_feed(n: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.arange(n * 4, dtype=np.float32).reshape(n, 4), "idx": np.arange(n, dtype=np.int64)}


def _cuda_listed() -> bool:
    from slimsam_edge.runtimes.onnxruntime_cuda.runner import cuda_provider_listed

    return cuda_provider_listed()


# -- registry ----------------------------------------------------------------------------------

def test_registry_lists_builtin_backends() -> None:
    assert {"onnxruntime", "openvino", "tensorrt", "torch"} <= set(registered_backends())


def test_unknown_backend_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown backend 'nope'.*onnxruntime"):
        runner_class("nope")


def test_open_runner_picks_backend_by_suffix(affine_onnx: Path, affine_ir: Path) -> None:
    assert open_runner(affine_onnx).backend == "onnxruntime"
    assert open_runner(affine_ir).backend == "openvino"


# -- onnxruntime ---------------------------------------------------------------------------------

def test_onnxruntime_specs_and_infer(affine_onnx: Path) -> None:
    with open_runner(affine_onnx, backend="onnxruntime", options=ONE_THREAD) as r:
        assert r.input_specs() == {"x": TensorSpec("x", np.dtype(np.float32), ("batch", 3))}
        assert r.output_specs()["y"].shape == ("batch", 3)
        x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
        np.testing.assert_allclose(r.infer({"x": x})["y"], x * 2 + 1, rtol=1e-6)
        assert r.notes == ["providers: CPUExecutionProvider"]
        assert r.activate_seconds is not None
    assert not r.is_active


def test_onnxruntime_two_inputs_int64(two_input_onnx: Path) -> None:
    with open_runner(two_input_onnx, options=ONE_THREAD) as r:
        specs = r.input_specs()
        assert specs["idx"].dtype == np.int64 and specs["idx"].shape == ("n",)
        out = r.infer(_two_feed())
        feed = _two_feed()
        np.testing.assert_allclose(out["y"], feed["x"] + feed["idx"][:, None])
        np.testing.assert_array_equal(out["k"], feed["idx"] + 1)
        assert out["k"].dtype == np.int64


@pytest.mark.parametrize(
    "feed, message",
    [
        ({"x": np.ones((2, 4), np.float64), "idx": np.zeros(2, np.int64)}, "dtype float64"),
        ({"x": np.ones((2, 4), np.float32)}, "missing input 'idx'"),
        ({"x": np.ones((2, 4, 1), np.float32), "idx": np.zeros(2, np.int64)}, "rank 3"),
        ({"x": np.ones((2, 5), np.float32), "idx": np.zeros(2, np.int64)}, r"shape \(2, 5\)"),
        ({**_two_feed(), "extra": np.zeros(1)}, "unexpected input 'extra'"),
    ],
)
def test_infer_rejects_bad_feeds(two_input_onnx: Path, feed: dict, message: str) -> None:
    r = open_runner(two_input_onnx, options=ONE_THREAD)
    with pytest.raises(RunnerError, match=message):
        r.infer(feed)


def test_onnxruntime_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(BundleError, match="bad.onnx.*re-export it") as info:
        open_runner(bad).activate()
    assert "\n" not in str(info.value)
    with pytest.raises(BundleError, match="not found"):
        open_runner(tmp_path / "missing.onnx").activate()


def test_onnxruntime_unavailable_provider_and_bad_options(affine_onnx: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
            open_runner(affine_onnx, options=RunnerOptions(device="cuda")).activate()
    with pytest.raises(UsageError, match="unknown device"):
        open_runner(affine_onnx, options=RunnerOptions(device="quantum")).activate()
    for precision in ("bf16", "fp16"):
        with pytest.raises(UsageError, match=f"cannot apply a {precision} hint"):
            open_runner(affine_onnx, options=RunnerOptions(precision=precision)).activate()
    r = open_runner(affine_onnx, options=RunnerOptions(extra={"providers": ["CPUExecutionProvider"]}))
    with r:
        assert "CPUExecutionProvider" in r.notes[0]


# -- onnxruntime-cuda ------------------------------------------------------------------------------

def _fake_ort_with_cuda(active: list[str]):
    """An onnxruntime module that lists the CUDA provider and whose sessions run on ``active``."""
    import types

    class Session:
        calls: list = []

        def __init__(self, source, sess_options=None, providers=None, provider_options=None):
            Session.calls.append((list(providers), [dict(o) for o in provider_options]))

        def get_providers(self):
            return list(active)

    return types.SimpleNamespace(
        get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        SessionOptions=type("SessionOptions", (), {}), GraphOptimizationLevel=types.SimpleNamespace(ORT_ENABLE_ALL=99),
        InferenceSession=Session)


def test_onnxruntime_cuda_refuses_a_session_that_fell_back_to_cpu(affine_onnx: Path, monkeypatch) -> None:
    from slimsam_edge.runtimes.onnxruntime_cuda.runner import OnnxRuntimeCudaRunner as Runner

    fake = _fake_ort_with_cuda(active=["CPUExecutionProvider"])  # CUDA libraries missing: ORT falls back
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    runner = Runner(affine_onnx, RunnerOptions(device="cuda:1"))
    with pytest.raises(BackendUnavailableError) as err:
        runner.activate()
    msg = str(err.value)
    assert "could not start CUDAExecutionProvider (running CPUExecutionProvider)" in msg and "\n" not in msg
    providers, options = fake.InferenceSession.calls[-1]
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options == [{"device_id": 1, "use_tf32": "0"}, {}]  # device_id from cuda:N; fp32 stays fp32
    # the unset device (RunnerOptions' "cpu") is the first GPU; a non-CUDA device is refused
    assert Runner(affine_onnx).options.device == "cuda:0"
    with pytest.raises(UsageError, match="'cuda' or 'cuda:N', not 'GPU'"):
        Runner(affine_onnx, RunnerOptions(device="GPU"))
    with pytest.raises(UsageError, match="chooses its providers"):
        Runner(affine_onnx, RunnerOptions(extra={"providers": ["CPUExecutionProvider"]}))


def test_onnxruntime_cuda_available_only_with_the_gpu_build(monkeypatch) -> None:
    from importlib import metadata

    from slimsam_edge.runtimes.onnxruntime_cuda import runner as cuda_runner

    def installed(name):
        if name == "onnxruntime-gpu":
            return object()
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setitem(sys.modules, "onnxruntime", _fake_ort_with_cuda(active=[]))
    monkeypatch.setattr(cuda_runner.metadata, "distribution", installed)
    assert cuda_runner.OnnxRuntimeCudaRunner.available() is True
    sys.modules["onnxruntime"].get_available_providers = lambda: ["CPUExecutionProvider"]  # the CPU build won
    assert cuda_runner.OnnxRuntimeCudaRunner.available() is False
    monkeypatch.setattr(cuda_runner.metadata, "distribution", lambda name: installed("onnxruntime"))
    assert cuda_runner.OnnxRuntimeCudaRunner.available() is False


def test_onnxruntime_cuda_recipe_is_its_own_class() -> None:
    from slimsam_edge.runtimes import get_backend

    cuda, cpu = get_backend("onnxruntime-cuda").recipe("fp16"), get_backend("onnxruntime").recipe("fp16")
    assert (cuda.backend, cpu.backend) == ("onnxruntime-cuda", "onnxruntime")
    assert isinstance(cuda, type(cpu)) and cuda.file_tag != cpu.file_tag  # never the same fp16 file


@pytest.mark.skipif(_cuda_listed(), reason="onnxruntime-gpu with the CUDA provider is installed here")
def test_onnxruntime_cuda_not_installed_gives_the_install_hint(tiny_model, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from helpers import assert_one_line_error, photo
    from slimsam_edge.cli.app import app
    from slimsam_edge.exporters.bundle_export import export_bundle

    with pytest.raises(BackendUnavailableError) as err:
        runner_class("onnxruntime-cuda")
    assert str(err.value) == "backend 'onnxruntime-cuda' is not installed; pip install 'slimsam-edge[gpu]'"
    # a bundle for a GPU target, exported on this CPU-only host (unvalidated: no CUDA here)
    toml = tmp_path / "gpu.toml"
    toml.write_text('name = "gpu"\nkind = "x86-gpu"\ndescription = "d"\nbackends = ["onnxruntime-cuda"]\n'
                    'default_precision = "fp32"\n[precisions]\n"onnxruntime-cuda" = ["fp32"]\n[graphs]\n'
                    '"onnxruntime-cuda" = ["image_encoder", "mask_decoder_lowres"]\n')
    export_bundle(tiny_model, tiny_model.spec, tmp_path / "b", target=str(toml), validate=False, simplify=False)
    import cv2

    cv2.imwrite(str(tmp_path / "x.png"), photo((64, 96)))
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "x.png"), "--bundle", str(tmp_path / "b"),
                                      "--point", "10,10", "--out", str(tmp_path / "m.png")])
    assert_one_line_error(result, "onnxruntime-cuda", "pip install 'slimsam-edge[gpu]'")


# -- openvino ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ov_caps() -> list[str]:
    ov = pytest.importorskip("openvino")
    return [str(c).upper() for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


@pytest.mark.parametrize("which", ["onnx", "ir"])
def test_openvino_specs_and_infer(which: str, affine_onnx: Path, affine_ir: Path) -> None:
    path = affine_onnx if which == "onnx" else affine_ir
    with open_runner(path, backend="openvino", options=ONE_THREAD) as r:
        spec = r.input_specs()["x"]
        assert spec.dtype == np.float32 and spec.shape[1] == 3 and isinstance(spec.shape[0], str)
        x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
        np.testing.assert_allclose(r.infer({"x": x})["y"], x * 2 + 1, rtol=1e-5)
        assert "INFERENCE_PRECISION_HINT=f32" in r.notes[0]
        with pytest.raises(RunnerError, match="dtype float64"):
            r.infer({"x": x.astype(np.float64)})


def test_openvino_two_inputs(two_input_onnx: Path) -> None:
    pytest.importorskip("openvino")
    with open_runner(two_input_onnx, backend="openvino", options=ONE_THREAD) as r:
        assert r.input_specs()["idx"].dtype == np.int64
        out = r.infer(_two_feed(2))
        np.testing.assert_array_equal(out["k"], [1, 2])
        np.testing.assert_allclose(out["y"], _two_feed(2)["x"] + np.array([[0.0], [1.0]]))


def test_openvino_compiles_axis_0_static_too(affine_onnx: Path, tiny_bundle: Path) -> None:
    pytest.importorskip("openvino")
    from slimsam_edge.bundle import load_bundle
    from slimsam_edge.runtimes.openvino.runner import STATIC_AXIS0_KEPT

    x = np.random.default_rng(2).standard_normal((8, 3)).astype(np.float32)
    with open_runner(affine_onnx, backend="openvino", options=ONE_THREAD) as r:
        assert "axis 0 also compiled static (x): 1, and other sizes when fed twice" in r.notes
        assert list(r._static) == [(1, False)]
        for rows in (x[:1], x[:4], x[:4]):  # static 1; 4 dynamic the first time, static the second
            np.testing.assert_allclose(r.infer({"x": rows})["y"], rows * 2 + 1, rtol=1e-5)
        assert list(r._static) == [(1, False), (4, False)]
        for n in (2, 3, 5, 6, 2):
            for _ in range(2):
                np.testing.assert_allclose(r.infer({"x": x[:n]})["y"], x[:n] * 2 + 1, rtol=1e-5)
        assert len(r._static) == STATIC_AXIS0_KEPT and list(r._static)[-1] == (2, False)  # least recently used dropped
        assert isinstance(r.input_specs()["x"].shape[0], str)  # the specs stay the dynamic graph's
    off = RunnerOptions(threads=1, extra={"static_axis0": False})
    with open_runner(affine_onnx, backend="openvino", options=off) as r:
        r.infer({"x": x[:1]})
        assert not any("static" in n for n in r.notes) and not r._static
    # the low-res decoder: one prompt through the static compile = the dynamic graph's answer
    b = load_bundle(tiny_bundle)
    path = b.path_of(b.find("mask_decoder_lowres", backend="openvino", precision="fp32"))
    g = b.manifest.image_size // 16
    feed = {"point_coords": np.array([[[30.0, 40.0], [0.0, 0.0]]], np.float32),
            "point_labels": np.array([[1.0, -1.0]], np.float32),
            "mask_input": np.zeros((1, 1, 4 * g, 4 * g), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    with open_runner(path, backend="openvino", options=ONE_THREAD) as fast, \
            open_runner(path, backend="openvino", options=off) as plain:
        assert any(n.startswith("axis 0 also compiled static (point_coords") for n in fast.notes)
        emb = fast.input_specs()["image_embeddings"].shape
        feed["image_embeddings"] = np.random.default_rng(3).standard_normal(emb).astype(np.float32)
        got, want = fast.infer(feed), plain.infer(feed)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_openvino_bf16_follows_cpu_capability(affine_onnx: Path, ov_caps: list[str]) -> None:
    from slimsam_edge.devices import detect

    r = open_runner(affine_onnx, backend="openvino", options=RunnerOptions(threads=1, precision="bf16"))
    if "BF16" in ov_caps:
        assert detect()["supports_bf16"]
        with r:
            x = np.ones((2, 3), np.float32)
            np.testing.assert_allclose(r.infer({"x": x})["y"], 3.0, rtol=1e-2)
            assert "bf16" in r.notes[0]
    else:  # the machine lacks it: the one error the accuracy gate may skip
        with pytest.raises(UnsupportedOnThisMachineError, match="does not support bf16"):
            r.activate()


def test_openvino_fp16_on_cpu_needs_capability(affine_onnx: Path, ov_caps: list[str]) -> None:
    r = open_runner(affine_onnx, backend="openvino", options=RunnerOptions(threads=1, precision="fp16"))
    if "FP16" not in ov_caps:
        with pytest.raises(UsageError, match="does not support fp16"):
            r.activate()
    else:
        with r:
            assert r.infer({"x": np.ones((1, 3), np.float32)})["y"].shape == (1, 3)


def test_openvino_device_and_file_errors(affine_onnx: Path, affine_ir: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    with pytest.raises(BackendUnavailableError, match="'NPU' is not available"):
        open_runner(affine_onnx, backend="openvino", options=RunnerOptions(device="npu")).activate()
    with pytest.raises(UsageError, match="unknown precision"):
        open_runner(affine_onnx, backend="openvino", options=RunnerOptions(precision="fp8")).activate()
    lonely = tmp_path / "lonely.xml"
    lonely.write_text(affine_ir.read_text())
    with pytest.raises(BundleError, match="lonely.bin is missing"):
        open_runner(lonely).activate()
    bad = tmp_path / "bad.xml"
    bad.write_text("<net>broken")
    (tmp_path / "bad.bin").write_bytes(b"")
    with pytest.raises(BundleError, match="re-export it") as info:
        open_runner(bad).activate()
    assert "\n" not in str(info.value)


def test_openvino_auto_device(affine_onnx: Path) -> None:
    pytest.importorskip("openvino")
    with open_runner(affine_onnx, backend="openvino", options=RunnerOptions(device="auto", threads=1)) as r:
        np.testing.assert_allclose(r.infer({"x": np.zeros((1, 3), np.float32)})["y"], 1.0)


# -- tensorrt (CPU machine: unavailable; GPU tests are marked) ----------------------------------

def _has_tensorrt() -> bool:
    from slimsam_edge.runtimes.tensorrt.runner import TensorRTRunner

    return TensorRTRunner.available()


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed here")
def test_tensorrt_unavailable_without_package(affine_onnx: Path, tmp_path: Path) -> None:
    from slimsam_edge.runtimes.tensorrt.build import build_engine
    from slimsam_edge.runtimes.tensorrt.runner import TensorRTRunner

    assert TensorRTRunner.available() is False
    with pytest.raises(BackendUnavailableError, match=r"slimsam-edge\[tensorrt\]"):
        runner_class("tensorrt")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        build_engine(affine_onnx, tmp_path / "affine.engine")
    with pytest.raises(BackendUnavailableError):
        open_runner(tmp_path / "affine.engine")
    assert not (tmp_path / "affine.engine").exists()


def test_tensorrt_device_strings() -> None:
    from slimsam_edge.runtimes.tensorrt.runner import _parse_device

    assert _parse_device("cpu") == ("cuda", 0)
    assert _parse_device("cuda:1") == ("cuda", 1)
    assert _parse_device("dla:0") == ("dla", 0)
    with pytest.raises(UsageError):
        _parse_device("npu")


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and cuda-python")
def test_tensorrt_engine_matches_onnxruntime(two_input_onnx: Path, tmp_path: Path) -> None:
    from slimsam_edge.runtimes.tensorrt.build import build_engine

    engine = build_engine(
        two_input_onnx, tmp_path / "two.engine",
        min_opt_max_shapes={"x": ((1, 4), (3, 4), (8, 4)), "idx": ((1,), (3,), (8,))},
        timing_cache=tmp_path / "timing.cache", workspace_gb=0.25,
    )
    assert engine.is_file() and (tmp_path / "timing.cache").is_file()
    feed = _two_feed(5)
    with open_runner(two_input_onnx, options=ONE_THREAD) as ref:
        want = ref.infer(feed)
    with open_runner(engine, options=RunnerOptions(device="cuda")) as r:
        assert r.input_specs()["x"].shape == ("?", 4)
        got = r.infer(feed)
        got_again = r.infer(_two_feed(2))
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5)
    np.testing.assert_array_equal(got["k"].astype(np.int64), want["k"])
    assert got_again["y"].shape == (2, 4)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and cuda-python")
def test_tensorrt_rejects_foreign_engine(tmp_path: Path) -> None:
    fake = tmp_path / "fake.engine"
    fake.write_bytes(b"\x00" * 256)
    with pytest.raises(BundleError, match="another TensorRT version or GPU"):
        open_runner(fake).activate()


# -- the runtime path never imports torch -------------------------------------------------------

def test_runtime_path_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import slimsam_edge.bundle, slimsam_edge.devices, slimsam_edge.runtimes as rt\n"
        "from slimsam_edge.runtimes import onnxruntime, openvino, tensorrt, torch\n"
        "rt.registered_backends()\n"
        "slimsam_edge.devices.detect(rt.runtime_distributions())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'openvino', 'tensorrt'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tensorrt_builder_module_does_not_import_torch() -> None:
    code = ("import sys\nimport slimsam_edge.runtimes.tensorrt.build\n"
            "sys.exit(1 if 'torch' in sys.modules else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "importing tensorrt_build pulled in torch: " + proc.stderr


# -- TensorRT code paths against a fake `tensorrt` + `cuda.bindings.runtime` (CPU only) ---------
# The fakes (tests/fake_tensorrt.py) follow the TRT 10/11 Python API closely enough to exercise the
# runner's buffer handling and build_engine's flag / profile / pinning / timing-cache logic on a
# machine without a GPU; their engines run the parsed ONNX with ONNX Runtime.

@pytest.fixture()
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    """``install(version, **kw)``: the TensorRT stand-in of tests/fake_tensorrt.py in sys.modules."""
    import fake_tensorrt

    return lambda version="10.3.0", **kw: fake_tensorrt.install(monkeypatch, version, **kw)


@pytest.fixture(scope="module")
def norm_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """y = softmax(layernorm(x)) * 2, i = int64(x) with x: float32 [batch, 3] (layers to pin, one integer)."""
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1),
         helper.make_node("Softmax", ["n"], ["s"], axis=-1), helper.make_node("Mul", ["s", "two"], ["y"]),
         helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64)],
        "norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("i", TensorProto.INT64, ["batch", 3])],
        initializer=[helper.make_tensor("g", TensorProto.FLOAT, [3], [1.0] * 3),
                     helper.make_tensor("b", TensorProto.FLOAT, [3], [0.0] * 3),
                     helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    return _save(graph, tmp_path_factory.mktemp("norm") / "norm.onnx")


def test_fake_tensorrt_build_and_run(fake_trt, affine_onnx: Path, norm_onnx: Path, tmp_path: Path) -> None:
    from slimsam_edge.runtimes.tensorrt.build import build_engine

    trt, cudart = fake_trt("10.3.0")
    cache = tmp_path / "timing.cache"
    engine = build_engine(affine_onnx, tmp_path / "a.engine", fp16=True, timing_cache=cache,
                          min_opt_max_shapes={"x": ((1, 3), (2, 3), (8, 3))}, workspace_gb=0.5,
                          optimization_level=5)
    builder = trt.Builder.last
    assert builder.network.flags == 1  # EXPLICIT_BATCH bit only
    assert {f.name for f in builder.config.flags} == {"FP16", "OBEY_PRECISION_CONSTRAINTS"}
    assert builder.config.profiles[0].shapes == {"x": ((1, 3), (2, 3), (8, 3))}
    assert builder.config.pool == {"workspace": 1 << 29}
    assert builder.config.builder_optimization_level == 5
    assert [layer.precision for layer in builder.network.layers] == [None, None]  # Mul, Add: nothing to pin
    assert cache.read_bytes() == b"+"
    assert engine.read_bytes().startswith(b"FAKE-ENGINE {") and trt.builds[-1]["flags"] == [
        "FP16", "OBEY_PRECISION_CONSTRAINTS"]
    build_engine(norm_onnx, tmp_path / "n.engine", fp16=True, dynamic_range=(1, 2, 8))
    assert trt.Builder.last.config.profiles[0].shapes == {"x": ((1, 3), (2, 3), (8, 3))}
    pinned = [layer.precision for layer in trt.Builder.last.network.layers]
    assert pinned == ["float32", "float32", None, None]  # LayerNorm + float Softmax; not Mul, not the int Cast

    with open_runner(engine) as r:
        assert r.input_specs()["x"].shape == ("?", 3)
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_allclose(r.infer({"x": x})["y"], x * 2 + 1)
        x5 = np.ones((5, 3), np.float32)  # larger batch: buffers grow
        np.testing.assert_allclose(r.infer({"x": x5})["y"], 3.0)
        with pytest.raises(RunnerError, match="outside the engine's optimization profile"):
            r.infer({"x": np.ones((9, 3), np.float32)})
        assert len(cudart.memory) == 2
    assert cudart.memory == {}  # _deactivate freed every buffer


def test_fake_tensorrt_errors(fake_trt, affine_onnx: Path, tmp_path: Path) -> None:
    from slimsam_edge.runtimes.tensorrt.build import build_engine

    fake_trt("10.3.0")
    with pytest.raises(UsageError, match="pass min/opt/max shapes"):
        build_engine(affine_onnx, tmp_path / "a.engine")
    shapes = {"x": ((1, 3), (2, 3), (8, 3))}
    with pytest.raises(UsageError, match="does not fit its declared shape"):
        build_engine(affine_onnx, tmp_path / "a.engine", min_opt_max_shapes={"x": ((1, 4), (2, 4), (8, 4))})
    with pytest.raises(UsageError, match="Q/DQ nodes in the ONNX or a calibrator"):
        build_engine(affine_onnx, tmp_path / "a.engine", int8=True, min_opt_max_shapes=shapes)
    with pytest.raises(UsageError, match="unknown layer type 'Nope'"):
        build_engine(affine_onnx, tmp_path / "a.engine", fp16=True, min_opt_max_shapes=shapes,
                     fp32_layer_types=("Nope",))
    assert not (tmp_path / "a.engine").exists()
    foreign = tmp_path / "foreign.engine"
    foreign.write_bytes(b"FAKE-ENGINE 8.6.1")
    with pytest.raises(BundleError, match="another TensorRT version or GPU.*rebuild it here with `slimsam-edge build"):
        open_runner(foreign).activate()
    with pytest.raises(BundleError, match="built by TensorRT 8.6.1"):
        open_runner(foreign, options=RunnerOptions(extra={"tensorrt_version": "8.6.1"})).activate()


def test_fake_tensorrt_11_refuses_weak_typing(fake_trt, affine_onnx: Path, tmp_path: Path) -> None:
    from slimsam_edge.runtimes.tensorrt.build import build_engine, entropy_calibrator_class

    trt, _ = fake_trt("11.4.0")
    shapes = {"x": ((1, 3), (2, 3), (8, 3))}
    with pytest.raises(UsageError, match="no FP16 builder flag.*strongly typed"):
        build_engine(affine_onnx, tmp_path / "a.engine", fp16=True, min_opt_max_shapes=shapes)
    with pytest.raises(UsageError, match="no INT8 calibrators"):
        entropy_calibrator_class()
    engine = build_engine(affine_onnx, tmp_path / "a.engine", strongly_typed=True, min_opt_max_shapes=shapes)
    assert trt.Builder.last.network.flags == 0b11 and engine.is_file()


def test_fake_tensorrt_entropy_calibrator(fake_trt, tmp_path: Path) -> None:
    import ctypes

    from slimsam_edge.runtimes.tensorrt import build as tensorrt_build

    trt, cudart = fake_trt("10.3.0")
    Calibrator = tensorrt_build.EntropyCalibrator  # module __getattr__ builds the class lazily
    assert issubclass(Calibrator, trt.IInt8EntropyCalibrator2)
    feeds = [{"x": np.full((2, 3), i, np.float32)} for i in range(2)]
    calib = Calibrator(feeds, tmp_path / "x.calib")
    assert calib.get_batch_size() == 1 and calib.read_calibration_cache() is None
    ptrs = calib.get_batch(["x"])
    got = np.ctypeslib.as_array((ctypes.c_float * 6).from_address(ptrs[0]))
    np.testing.assert_array_equal(got, 0.0)
    calib.get_batch(["x"])
    assert calib.get_batch(["x"]) is None and calib.batches == 2
    calib.write_calibration_cache(b"cache")
    assert calib.read_calibration_cache() == b"cache"
    calib.free()
    assert cudart.memory == {}
    with pytest.raises(RunnerError, match="lacks inputs"):
        Calibrator([{"y": np.zeros(1, np.float32)}], tmp_path / "y.calib").get_batch(["x"])


# -- the backend contract: every registered backend, one parametrized test --------------------
# Each entry makes (artifact, options, fp32 ONNX reference) for its backend. A backend that is
# registered but missing here fails test_contract_covers_every_registered_backend.

def _bundle_case(backend: str):
    def make(request: pytest.FixtureRequest, tmp_path: Path):
        from slimsam_edge.bundle import load_bundle

        b = load_bundle(request.getfixturevalue("tiny_bundle"))
        graph = "mask_decoder_lowres"
        art = b.find(graph, backend=backend, precision="fp32")
        options = RunnerOptions(threads=1, extra={"graph": graph})
        return b.path_of(art), options, b.path_of(b.find(graph, backend="onnxruntime", precision="fp32"))

    return make


def _tensorrt_case(request: pytest.FixtureRequest, tmp_path: Path):
    """TensorRT is not installable here: the fake module of the tests above stands in for it."""
    from slimsam_edge.runtimes.tensorrt.build import build_engine

    request.getfixturevalue("fake_trt")("10.3.0")
    onnx_path = request.getfixturevalue("affine_onnx")
    engine = build_engine(onnx_path, tmp_path / "affine.engine", min_opt_max_shapes={"x": ((1, 3), (2, 3), (8, 3))})
    return engine, RunnerOptions(), onnx_path


def _onnxruntime_cuda_case(request: pytest.FixtureRequest, tmp_path: Path):
    """The bundle's ONNX decoder on the CUDA provider, compared with ONNX Runtime on the CPU."""
    artifact, _, reference = _bundle_case("onnxruntime")(request, tmp_path)
    return artifact, RunnerOptions(threads=1, device="cuda:0"), reference


CONTRACT = {
    "onnxruntime": _bundle_case("onnxruntime"),
    "openvino": _bundle_case("openvino"),
    "torch": _bundle_case("torch"),
    "tensorrt": _tensorrt_case,
    "onnxruntime-cuda": _onnxruntime_cuda_case,
}
#: contract cases that need real hardware (deselected by default: -m gpu runs them)
CONTRACT_MARKS = {"onnxruntime-cuda": pytest.mark.gpu}


def _feed(specs: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for name, spec in specs.items():
        shape = tuple(d if isinstance(d, int) and d >= 0 else 2 for d in spec.shape)
        feed[name] = (rng.standard_normal(shape) if spec.dtype.kind == "f" else np.zeros(shape)).astype(spec.dtype)
    return feed


def test_contract_covers_every_registered_backend() -> None:
    assert sorted(CONTRACT) == registered_backends(), "add the new backend to CONTRACT"


def _check_contract(backend: str, artifact, options: RunnerOptions, reference: Path) -> None:
    runner = open_runner(artifact, backend=backend, options=options)
    assert runner.backend == backend and not runner.is_active
    with runner:
        inputs, outputs = runner.input_specs(), runner.output_specs()
        assert inputs and outputs and all(isinstance(s, TensorSpec) for s in (*inputs.values(), *outputs.values()))
        feed = _feed(inputs)
        got = runner.infer(feed)
        assert set(got) == set(outputs)
        with pytest.raises(RunnerError) as err:  # a bad feed: typed, one line, names the problem
            runner.infer({**feed, "not_an_input": np.zeros(1, np.float32)})
        assert "unexpected input 'not_an_input'" in str(err.value) and "\n" not in str(err.value)
    assert not runner.is_active
    with open_runner(reference, backend="onnxruntime") as ref:
        expected = ref.infer(feed)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-3, atol=1e-3, err_msg=f"{backend} {name}")
    with runner:  # close and reopen: same answer
        again = runner.infer(feed)
    for name, value in got.items():
        np.testing.assert_allclose(again[name], value, rtol=1e-5, atol=1e-5)
    _check_threads(runner, inputs)


def _check_threads(runner, inputs: dict) -> None:
    """One runner shared by 4 threads, each with its own inputs: every answer is its own serial one
    (issue 20: OpenVINO's single infer request answered with other threads' results)."""
    from concurrent.futures import ThreadPoolExecutor

    feeds = [_feed(inputs, seed) for seed in range(4)]
    serial = [runner.infer(f) for f in feeds]
    with ThreadPoolExecutor(4) as pool:
        shared = list(pool.map(lambda i: [runner.infer(feeds[i]) for _ in range(5)], [0, 1, 2, 3] * 2))
    runner.deactivate()
    for i, answers in enumerate(shared):
        for got in answers:
            for name, value in serial[i % 4].items():
                np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=f"thread {i} {name}")


@pytest.mark.parametrize("backend", [pytest.param(b, marks=CONTRACT_MARKS.get(b, ())) for b in sorted(CONTRACT)])
def test_backend_contract(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from slimsam_edge.runtimes import get_backend

    if backend != "tensorrt" and not get_backend(backend).runner.available():
        pytest.skip(f"{backend} is not installed here")
    _check_contract(backend, *CONTRACT[backend](request, tmp_path))


# -- the worked example of docs/backends.md, registered for one test ---------------------------

def _doc_example() -> str:
    text = (Path(__file__).parents[1] / "docs" / "backends.md").read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("### Adding a backend")) + len("```python\n")
    return text[start:text.index("```", start)]


@pytest.fixture()
def example_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The documented folder, written to a temporary package and added to the registry's list."""
    from slimsam_edge.runtimes import registry

    folder = tmp_path / "plugins" / "onnxruntime_unoptimized"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("")
    (folder / "__init__.py").write_text(_doc_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "BUILTIN_BACKENDS", [*registry.BUILTIN_BACKENDS, "plugins.onnxruntime_unoptimized"])
    yield "onnxruntime-unoptimized"
    registry.unregister_backend("onnxruntime-unoptimized")
    registry._LOADED.discard("plugins.onnxruntime_unoptimized")
    for name in [m for m in sys.modules if m == "plugins" or m.startswith("plugins.")]:
        del sys.modules[name]


def test_the_documented_example_backend(example_backend: str, tiny_model, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    """One folder + one registry line: listed, passes the contract, exported to by a TOML target."""
    from slimsam_edge.bundle import load_bundle
    from slimsam_edge.exporters.bundle_export import export_bundle

    assert example_backend in registered_backends()
    assert sorted(CONTRACT) != registered_backends()  # the coverage test would now fail
    runner = runner_class(example_backend)
    assert runner.optimization_level == "ORT_DISABLE_ALL" and runner.backend == example_backend
    toml = tmp_path / "board.toml"
    toml.write_text('name = "board"\nkind = "cpu"\ndescription = "d"\nbackends = ["onnxruntime-unoptimized"]\n'
                    'default_precision = "fp32"\n[precisions]\n"onnxruntime-unoptimized" = ["fp32"]\n'
                    '[graphs]\n"onnxruntime-unoptimized" = ["image_encoder", "mask_decoder_lowres"]\n')
    m = export_bundle(tiny_model, tiny_model.spec, tmp_path / "b", target=str(toml), simplify=False)
    assert set(m.validation) == {"image_encoder/onnxruntime-unoptimized/fp32",
                                 "mask_decoder_lowres/onnxruntime-unoptimized/fp32"}
    b = load_bundle(tmp_path / "b")
    art = b.find("mask_decoder_lowres")
    assert art.backend == example_backend
    options = RunnerOptions(threads=1)
    _check_contract(example_backend, b.path_of(art), options, b.path_of(art))
