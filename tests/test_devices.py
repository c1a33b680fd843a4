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
    all_graphs = ("image_encoder", "mask_decoder", "mask_decoder_lowres")
    assert cpu.backends == ("onnxruntime", "openvino") and cpu.default_backend == "onnxruntime"
    assert cpu.graphs == {"onnxruntime": all_graphs, "openvino": ("image_encoder", "mask_decoder_lowres")}
    assert {p: cpu.backends_for(p) for p in cpu.all_precisions()} == {
        "fp32": ("onnxruntime", "openvino"), "fp16": ("onnxruntime", "openvino"),
        "bf16": ("openvino",), "int8": ("onnxruntime", "openvino")}
    assert onnx.backends == ("onnxruntime",) and onnx.graphs == {"onnxruntime": all_graphs}
    assert onnx.all_precisions() == ("fp32", "fp16", "int8")


def test_profile_facts() -> None:
    nano, agx, x86 = load_profile("jetson-orin-nano"), load_profile("jetson-agx-orin"), load_profile("x86-gpu")
    assert nano.kind == agx.kind == "jetson" and x86.kind == "x86-gpu"
    assert nano.dla_cores == 0 and agx.dla_cores == 2
    assert any("DLA" in n for n in nano.notes) and any("DLA" in n for n in agx.notes)
    assert x86.backends == ("tensorrt", "onnxruntime")
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
    bad = tmp_path / "board.toml"
    assert change[0] in GOOD
    bad.write_text(GOOD.replace(*change))
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
        assert p.tensorrt == TensorRTSettings(workspace[name], 3, (1, 4, 16), ("LayerNormalization", "Softmax"))
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
    (('fp32_layers = ["LayerNormalization", "Softmax"]', "fp32_layers = [1]"), "'tensorrt.fp32_layers' must be a list of strings"),
    (("fp32_layers", "fp16_layers"), "'tensorrt.fp16_layers' is not a tensorrt key; use workspace_gb"),
    (("threads = 2", "threads = -1"), "'runtime.threads' must be >= 0"),
    (('device = "cuda:0"', "device = 0"), "'runtime.device' must be a str"),
    (('device = "cuda:0"', 'gpu = "cuda:0"'), "'runtime.gpu' is not a runtime key"),
    (("[runtime]", "[runtime.cuda]"), "'runtime.cuda' is not a runtime key"),
])
def test_tensorrt_and_runtime_errors_name_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    bad = tmp_path / "board.toml"
    assert change[0] in GOOD_TRT
    bad.write_text(GOOD_TRT.replace(*change, 1))
    with pytest.raises(UsageError) as err:
        load_profile(str(bad))
    text = str(err.value)
    assert text.startswith(f"device profile {bad}: ") and message in text and "\n" not in text


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
