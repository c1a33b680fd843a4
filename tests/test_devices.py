"""Device profiles (TOML data) and machine detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimsam_edge.devices import DeviceProfile, default_profile, detect, list_profiles, load_profile
from slimsam_edge.errors import BackendUnavailableError, UsageError


def test_shipped_profiles_load() -> None:
    names = list_profiles()
    assert {"cpu", "x86", "jetson-orin-nano", "jetson-agx-orin"} <= set(names)
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
        "bf16": ("openvino",), "int8": ("onnxruntime", "openvino")}
    assert onnx.backends == ("onnxruntime",) and onnx.graphs == {"onnxruntime": all_graphs}
    assert onnx.all_precisions() == ("fp32", "fp16", "int8")


def test_profile_facts() -> None:
    nano, agx, x86 = load_profile("jetson-orin-nano"), load_profile("jetson-agx-orin"), load_profile("x86")
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
        load_profile("x86").pick_backend(["openvino"])


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
