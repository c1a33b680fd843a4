"""Device profiles (TOML data) and machine detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimsam_edge.devices import DeviceProfile, default_profile, detect, list_profiles, load_profile
from slimsam_edge.errors import BackendUnavailableError, UsageError


def test_shipped_profiles_load() -> None:
    names = list_profiles()
    assert {"cpu", "onnx", "x86-gpu", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "intel-gpu"} <= set(names)
    for name in names:
        p = load_profile(name)
        assert p.name == name
        assert p.default_backend in p.backends and p.default_precision in p.all_precisions()
        assert set(p.precisions) == set(p.graphs) == set(p.backends)
        assert all("fp32" in ps for ps in p.precisions.values())


def test_cpu_and_onnx_targets_as_exported() -> None:
    """The export behaviour of the former exporters/targets.py, now read from the profiles."""
    cpu, onnx = load_profile("cpu"), load_profile("onnx")
    all_graphs = ("image_encoder", "image_encoder_pixels", "mask_decoder", "mask_decoder_single",
                  "mask_decoder_lowres")
    assert cpu.backends == ("onnxruntime", "openvino") and cpu.default_backend == "onnxruntime"
    assert cpu.graphs == {"onnxruntime": all_graphs, "openvino": ("image_encoder", "mask_decoder_lowres")}
    assert {p: cpu.backends_for(p) for p in cpu.all_precisions()} == {
        "fp32": ("onnxruntime", "openvino"), "fp16": ("onnxruntime", "openvino"),
        "bf16": ("openvino",), "int8": ("onnxruntime", "openvino"), "int8-bf16": ("openvino",)}
    assert onnx.backends == ("onnxruntime",) and onnx.graphs == {"onnxruntime": all_graphs}
    assert onnx.all_precisions() == ("fp32", "fp16", "int8")


def test_profile_facts() -> None:
    nano, agx, x86 = load_profile("jetson-orin-nano"), load_profile("jetson-agx-orin"), load_profile("x86-gpu")
    assert nano.kind == agx.kind == "jetson" and x86.kind == "x86-gpu"
    assert nano.dla_cores == 0 and agx.dla_cores == 2
    assert any("DLA" in n for n in nano.notes) and any("DLA" in n for n in agx.notes)
    assert x86.backends == ("tensorrt", "onnxruntime-cuda", "onnxruntime")
    assert x86.pick_backend(["onnxruntime", "onnxruntime-cuda"]) == "onnxruntime-cuda"
    assert {"fp16", "int8"} <= set(agx.all_precisions()) and agx.backends_for("fp16") == ("tensorrt", "onnxruntime")
    with pytest.raises(AttributeError):
        nano.name = "other"  # type: ignore[misc]


def test_unknown_profile_lists_known_names() -> None:
    with pytest.raises(UsageError, match="unknown target 'toaster'.*cpu.*jetson-agx-orin.*path of a .toml"):
        load_profile("toaster")


GOOD = ('name = "mine"\nkind = "cpu"\ndescription = "d"\nbackends = ["onnxruntime"]\n'
        'default_backend = "onnxruntime"\ndefault_precision = "fp32"\n'
        '[precisions]\nonnxruntime = ["fp32"]\n[graphs]\nonnxruntime = ["image_encoder"]\n')


@pytest.mark.parametrize("change, message", [
    (('default_backend = "onnxruntime"', 'default_backend = "tensorrt"'), "'default_backend' must be one of its backends"),
    (('kind = "cpu"\n', ''), "missing key 'kind'"),
    (('[graphs]\nonnxruntime = ["image_encoder"]\n', ''), "missing key 'graphs'"),
    (('[graphs]\nonnxruntime', '[graphs]\nopenvino'), "'graphs.openvino' names a backend missing from 'backends'"),
    (('onnxruntime = ["fp32"]', 'onnxruntime = ["fp64"]'), "'precisions.onnxruntime' has unknown precisions ['fp64']"),
    (('onnxruntime = ["fp32"]', 'onnxruntime = ["int8"]'), "'precisions.onnxruntime' must include fp32"),
    (('backends = ["onnxruntime"]', 'backend = ["onnxruntime"]'), "'backend' is not a profile key"),
    (('kind = "cpu"', 'kind = 3'), "'kind' must be a str"),
])
def test_profile_file_errors_name_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    _assert_refused(tmp_path, GOOD, change, message)


def _assert_refused(tmp_path: Path, good: str, change: tuple[str, str], message: str) -> None:
    """``good`` with ``change`` applied is refused in one line naming the file and ``message``."""
    bad = tmp_path / "board.toml"
    assert change[0] in good
    bad.write_text(good.replace(*change, 1))
    with pytest.raises(UsageError) as err:
        load_profile(str(bad))
    assert str(err.value).startswith(f"device profile {bad}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_profile_from_file_and_validation(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text(GOOD)
    mine = load_profile(str(good))
    assert mine.name == "mine" and mine.graphs == {"onnxruntime": ("image_encoder",)}
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_profile(str(broken))
    with pytest.raises(UsageError, match="device profile x.toml: missing key 'backends'"):
        DeviceProfile.from_dict({"name": "x"}, "x.toml")


def test_pick_backend() -> None:
    cpu = load_profile("cpu")
    assert cpu.pick_backend(["onnxruntime", "openvino"]) == "onnxruntime"
    assert cpu.pick_backend(["openvino"]) == "openvino"
    assert cpu.pick_backend(["onnxruntime"]) == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match="none is installed"):
        load_profile("x86-gpu").pick_backend(["openvino"])


def test_detect_describes_this_machine() -> None:
    from slimsam_edge.runtimes import runtime_distributions

    info = detect(runtime_distributions())
    assert set(info["runtimes"]) == set(runtime_distributions()) >= {"onnxruntime", "openvino", "tensorrt"}
    assert detect()["runtimes"] == {}  # the registry, a layer above, owns the distribution table
    for key in ("cpu_model", "cores_logical", "cores_physical", "memory_total_gb", "cpu_flags",
                "supports_bf16", "os", "python", "runtimes", "is_jetson"):
        assert key in info
    assert info["cores_logical"] >= 1 and info["memory_total_gb"] > 0
    assert {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"} <= set(info["cpu_flags"])
    assert info["runtimes"]["onnxruntime"]  # a core dependency
    assert isinstance(info["supports_bf16"], bool)
    flags = info["cpu_flags"]
    assert info["supports_bf16"] == (flags["avx512_bf16"] or flags["amx_bf16"] or flags["bf16"])
    assert info["amx"] == (flags["amx_bf16"] or flags["amx_int8"])


def test_default_profile() -> None:
    assert default_profile({"is_jetson": False}) == "cpu"
    assert default_profile({"is_jetson": True, "jetson_model": "NVIDIA Jetson AGX Orin"}) == "jetson-agx-orin"
    assert default_profile({"is_jetson": True, "jetson_model": "NVIDIA Jetson Orin Nano"}) == "jetson-orin-nano"
    assert default_profile() in list_profiles()


# -- [tensorrt] and [runtime] tables ---------------------------------------------------------------

TRT = ('\n[tensorrt]\nworkspace_gb = 1.5\noptimization_level = 3\ndecoder_points = [1, 4, 16]\n'
       'fp32_layers = ["LayerNormalization", "Softmax"]\n[runtime]\nthreads = 2\ndevice = "cuda:0"\n')
GOOD_TRT = (GOOD.replace('backends = ["onnxruntime"]', 'backends = ["tensorrt", "onnxruntime"]')
            .replace('onnxruntime = ["fp32"]', 'onnxruntime = ["fp32"]\ntensorrt = ["fp32", "fp16"]')
            .replace('onnxruntime = ["image_encoder"]', 'onnxruntime = ["image_encoder"]\ntensorrt = ["image_encoder"]')
            + TRT)


def test_shipped_tensorrt_and_runtime_tables() -> None:
    from slimsam_edge.devices import RuntimeDefaults, TensorRTSettings

    workspace = {"jetson-orin-nano": 1.0, "jetson-orin-nx": 2.0, "jetson-agx-orin": 4.0, "x86-gpu": 8.0}
    for name in list_profiles():
        p = load_profile(name)
        assert isinstance(p.runtime, RuntimeDefaults)
        if "tensorrt" not in p.backends:
            assert p.tensorrt is None
            continue
        assert p.tensorrt == TensorRTSettings(workspace[name], 3, (1, 4, 16), ("LayerNormalization", "Softmax"),
                                              (1, 16, 64))
        assert p.runtime.device == "cuda:0"
        # what an export copies into a manifest reads back to the same settings
        assert TensorRTSettings.from_dict(p.tensorrt.to_dict(), "manifest") == p.tensorrt
    assert set(workspace) == {n for n in list_profiles() if load_profile(n).tensorrt}
    assert load_profile("cpu").runtime == RuntimeDefaults(0, "cpu")
    nx = load_profile("jetson-orin-nx")
    assert nx.kind == "jetson" and nx.dla_cores == 1 and any("16 GB" in n for n in nx.notes)
    intel = load_profile("intel-gpu")
    assert intel.kind == "intel-gpu" and intel.backends == ("openvino", "onnxruntime")
    assert intel.runtime.device == "GPU" and intel.precisions["openvino"] == ("fp32", "fp16", "int8")
    assert intel.graphs["openvino"] == load_profile("cpu").graphs["openvino"]


def test_tensorrt_table_read_from_a_file(tmp_path: Path) -> None:
    board = tmp_path / "board.toml"
    board.write_text(GOOD_TRT)
    p = load_profile(str(board))
    assert p.tensorrt is not None and p.tensorrt.workspace_gb == 1.5 and p.tensorrt.decoder_points == (1, 4, 16)
    assert (p.runtime.threads, p.runtime.device) == (2, "cuda:0")
    assert p.tensorrt.decoder_batch == (1, 1, 16)  # optional: tables and manifests written before it load
    board.write_text(GOOD_TRT.replace("fp32_layers", "decoder_batch = [2, 8, 32]\nfp32_layers"))
    assert load_profile(str(board)).tensorrt.decoder_batch == (2, 8, 32)


@pytest.mark.parametrize("change, message", [
    (("[tensorrt]\n", "[tensorrt_x]\n"), "'tensorrt_x' is not a profile key"),
    (("workspace_gb = 1.5\n", ""), "missing key 'tensorrt.workspace_gb'"),
    (("workspace_gb = 1.5", "workspace_gb = 0"), "'tensorrt.workspace_gb' must be > 0"),
    (("workspace_gb = 1.5", 'workspace_gb = "1"'), "'tensorrt.workspace_gb' must be a float or int"),
    (("optimization_level = 3", "optimization_level = 6"), "'tensorrt.optimization_level' must be 0..5"),
    (("optimization_level = 3", "optimization_level = true"), "'tensorrt.optimization_level' must be a int"),
    (("[1, 4, 16]", "[4, 1, 16]"), "'tensorrt.decoder_points' must be [min, opt, max] with 1 <= min <= opt <= max"),
    (("[1, 4, 16]", "[0, 4, 16]"), "'tensorrt.decoder_points' must be [min, opt, max]"),
    (("[1, 4, 16]", "[1, 16]"), "'tensorrt.decoder_points' must be [min, opt, max]"),
    (("fp32_layers", "decoder_batch = [1, 64, 16]\nfp32_layers"), "'tensorrt.decoder_batch' must be [min, opt, max] with"),
    (("fp32_layers", "decoder_batch = 16\nfp32_layers"), "'tensorrt.decoder_batch' must be a list"),
    (('fp32_layers = ["LayerNormalization", "Softmax"]', "fp32_layers = [1]"), "'tensorrt.fp32_layers' must be a list of strings"),
    (("fp32_layers", "fp16_layers"), "'tensorrt.fp16_layers' is not a tensorrt key; use workspace_gb"),
    (("threads = 2", "threads = -1"), "'runtime.threads' must be >= 0"),
    (('device = "cuda:0"', "device = 0"), "'runtime.device' must be a str"),
    (('device = "cuda:0"', 'gpu = "cuda:0"'), "'runtime.gpu' is not a runtime key"),
    (("[runtime]", "[runtime.cuda]"), "'runtime.cuda' is not a runtime key"),
])
def test_tensorrt_and_runtime_errors_name_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    _assert_refused(tmp_path, GOOD_TRT, change, message)


def test_tensorrt_table_required_with_tensorrt(tmp_path: Path) -> None:
    bad = tmp_path / "board.toml"
    bad.write_text(GOOD_TRT.split("\n[tensorrt]")[0])
    with pytest.raises(UsageError, match=f"device profile {bad}: missing key 'tensorrt' .*required when 'backends' has tensorrt"):
        load_profile(str(bad))


def test_tensorrt_settings_from_a_manifest_name_where_and_bare_key() -> None:
    from slimsam_edge.devices import TensorRTSettings

    good = load_profile("x86-gpu").tensorrt.to_dict()
    where = "bundle b/: manifest build_plan.tensorrt.settings"
    with pytest.raises(UsageError) as err:
        TensorRTSettings.from_dict({**good, "workspace_gb": -1}, where)
    assert str(err.value) == f"{where}: 'workspace_gb' must be > 0 (GiB), got -1"
    with pytest.raises(UsageError, match=f"{where}: 'dla' is not a tensorrt key"):
        TensorRTSettings.from_dict({**good, "dla": 1}, where)
    with pytest.raises(UsageError, match=f"{where}: missing key 'fp32_layers'"):
        TensorRTSettings.from_dict({k: v for k, v in good.items() if k != "fp32_layers"}, where)
    with pytest.raises(UsageError, match=f"{where}: 'tensorrt' must be a table"):
        TensorRTSettings.from_dict([1], where)


# -- detection: this machine, a fake Jetson, a fake NVIDIA GPU ---------------------------------------

def test_detect_reports_readable_features_and_runtime_versions() -> None:
    from slimsam_edge.devices import CPU_FLAG_NAMES
    from slimsam_edge.runtimes import runtime_devices, runtime_distributions

    info = detect(runtime_distributions())
    assert "avx2" in info["cpu_flags"] and "asimddp" in info["cpu_flags"]
    assert CPU_FLAG_NAMES["asimddp"] == "Arm dot-product" and CPU_FLAG_NAMES["bf16"] == "Arm BF16"
    assert CPU_FLAG_NAMES["i8mm"] == "Arm I8MM"
    assert info["cpu_features"] == [CPU_FLAG_NAMES[f] for f, on in info["cpu_flags"].items() if on]
    assert info["runtimes"]["onnxruntime"][0].isdigit() and info["runtimes"]["openvino"][0].isdigit()
    assert info["is_jetson"] is False and info["l4t"] is None and info["jetpack"] is None
    assert info["nvidia_gpus"] is None or isinstance(info["nvidia_gpus"], list)
    ov = runtime_devices()["openvino"]
    assert ov[0]["device"] == "CPU" and "FP32" in ov[0]["capabilities"]


def test_detect_a_fake_jetson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slimsam_edge.devices import profile

    release, model = tmp_path / "nv_tegra_release", tmp_path / "model"
    line = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8"
    release.write_text(line + "\n# KERNEL_VARIANT: oot\n")
    model.write_bytes(b"NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sha512 bf16 i8mm\n")
    monkeypatch.setattr(profile, "_TEGRA_RELEASE", release)
    monkeypatch.setattr(profile, "_DT_MODEL", model)
    monkeypatch.setattr(profile, "_CPUINFO", cpuinfo)
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    info = detect()
    assert info["is_jetson"] and info["jetson_model"] == "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"
    assert (info["l4t"], info["jetpack"], info["jetson_release"]) == ("L4T R36.4.3", "JetPack 6.2", line)
    assert info["cpu_features"] == ["Arm NEON", "Arm dot-product", "Arm BF16", "Arm I8MM"]
    assert info["supports_bf16"] and info["fast_int8"]
    assert default_profile(info) == "jetson-orin-nx"
    model.write_text("NVIDIA Jetson AGX Orin Developer Kit")
    assert default_profile(detect()) == "jetson-agx-orin"
    model.write_text("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super")
    assert default_profile(detect()) == "jetson-orin-nano"
    model.write_text("NVIDIA Jetson Orin Something New")
    assert default_profile(detect()) == "jetson-orin-nano"  # unknown board: the conservative one


def _fake_pynvml(fail: bool = False):
    import types

    nvml = types.ModuleType("pynvml")

    class Mem:
        total = 24 * 2**30

    def init() -> None:
        if fail:
            raise RuntimeError("NVML Shared Library Not Found")

    nvml.nvmlInit, nvml.nvmlShutdown = init, lambda: None
    nvml.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nvml.nvmlDeviceGetCudaComputeCapability = lambda h: (8, 9)
    nvml.nvmlDeviceGetName = lambda h: "NVIDIA L4"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: Mem()
    return nvml


def test_detect_an_nvidia_gpu_through_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    info = detect()
    assert info["nvidia_gpus"] == [{"index": 0, "name": "NVIDIA L4", "memory_gb": 24.0,
                                    "compute_capability": "8.9", "driver": "550.54.15"}]
    assert default_profile(info) == "x86-gpu"
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail=True))
    assert detect()["nvidia_gpus"] is None  # never an error
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert detect()["nvidia_gpus"] is None


def test_machine_precisions_and_why_not() -> None:
    from slimsam_edge.devices import machine_precisions, why_not

    cpu = load_profile("cpu")
    assert machine_precisions(cpu, {"supports_bf16": True}) == ("fp32", "fp16", "bf16", "int8", "int8-bf16")
    assert machine_precisions(cpu, {"supports_bf16": False}) == ("fp32", "fp16", "int8")
    msg = why_not("bf16", {"supports_bf16": False, "cpu_model": "Old CPU"})
    assert msg and "AVX512_BF16, AMX or Arm BF16" in msg and "Old CPU" in msg and "--precision fp32" in msg
    msg = why_not("int8-bf16", {"supports_bf16": False, "cpu_model": "Old CPU"})
    assert msg.startswith("int8-bf16 needs a CPU with AVX512_BF16") and "--precision int8" in msg and "\n" not in msg
    assert why_not("int8-bf16", {"supports_bf16": True}) is None
    assert machine_precisions(load_profile("jetson-orin-nano"), {"supports_bf16": False}) == ("fp32", "fp16", "int8")


# -- a new board = one TOML file -----------------------------------------------------------------

THOR = """# a made-up Jetson: nothing but this file
name = "jetson-thor-mini"
kind = "jetson"
description = "made-up Jetson Thor Mini (Blackwell GPU, 1 DLA core)"
backends = ["tensorrt", "onnxruntime"]
default_precision = "fp16"
dla_cores = 1
board_models = ["Thor Mini"]

[precisions]
tensorrt = ["fp32", "fp16", "int8"]
onnxruntime = ["fp32"]

[graphs]
tensorrt = ["image_encoder", "mask_decoder_lowres"]
onnxruntime = ["image_encoder", "mask_decoder_lowres"]

[tensorrt]
workspace_gb = 2.5
optimization_level = 4
decoder_points = [1, 8, 32]
fp32_layers = ["LayerNormalization"]

[runtime]
device = "cuda:0"
"""


def test_a_new_board_is_one_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slimsam_edge.devices import profile

    board = tmp_path / "jetson-thor-mini.toml"
    board.write_text(THOR)
    shipped = profile._profile_files()
    monkeypatch.setattr(profile, "_profile_files", lambda: {**shipped, "jetson-thor-mini": board})
    assert "jetson-thor-mini" in list_profiles()
    thor = load_profile("jetson-thor-mini")
    assert (thor.dla_cores, thor.tensorrt.decoder_points, thor.tensorrt.workspace_gb) == (1, (1, 8, 32), 2.5)
    assert default_profile({"is_jetson": True, "jetson_model": "NVIDIA Jetson Thor Mini Developer Kit"}) == "jetson-thor-mini"
    assert default_profile({"is_jetson": True, "jetson_model": "NVIDIA Jetson AGX Orin"}) == "jetson-agx-orin"
    assert load_profile(str(board)) == load_profile("jetson-thor-mini").__class__(
        **{**thor.__dict__, "source": str(board)})  # the same board by path


def test_detected_runs_detect_once_across_threads(monkeypatch):
    """Predictors opened from several threads at once share one detection (the cache is locked)."""
    import threading
    import time

    from slimsam_edge.devices import profile

    calls: list[int] = []

    def slow_detect():
        calls.append(1)
        time.sleep(0.05)  # wide window for a second thread to start its own detection
        return {"is_jetson": False, "n": len(calls)}

    monkeypatch.setattr(profile, "_DETECTED", [])
    monkeypatch.setattr(profile, "detect", slow_detect)
    start = threading.Barrier(4)
    results: list[dict] = []

    def worker():
        start.wait()
        results.append(profile.detected())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(r is results[0] for r in results)


@pytest.mark.parametrize("value", [float("inf"), 1e12])
def test_tensorrt_workspace_must_be_a_real_size(value):
    """A manifest may hold Infinity (json.loads accepts it): refused in one line, not an OverflowError
    when the builder computes the byte limit."""
    from slimsam_edge.devices.profile import TensorRTSettings

    data = {"workspace_gb": value, "optimization_level": 3, "decoder_points": [1, 4, 16], "fp32_layers": []}
    with pytest.raises(UsageError, match="workspace_gb") as err:
        TensorRTSettings.from_dict(data, "bundle b: build_plan.tensorrt.settings")
    assert "\n" not in str(err.value)
