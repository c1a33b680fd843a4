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
        assert p.default_backend in p.backends and p.default_precision in p.precisions


def test_profile_facts() -> None:
    nano, agx, x86 = load_profile("jetson-orin-nano"), load_profile("jetson-agx-orin"), load_profile("x86")
    assert nano.kind == agx.kind == "jetson" and x86.kind == "x86-gpu"
    assert nano.dla_cores == 0 and agx.dla_cores == 2
    assert any("DLA" in n for n in nano.notes) and any("DLA" in n for n in agx.notes)
    assert x86.backends == ("tensorrt", "onnxruntime")
    assert {"fp16", "int8"} <= set(agx.precisions)
    with pytest.raises(AttributeError):
        nano.name = "other"  # type: ignore[misc]


def test_unknown_profile_lists_known_names() -> None:
    with pytest.raises(UsageError, match="unknown device profile 'toaster'.*cpu.*jetson-agx-orin"):
        load_profile("toaster")


def test_profile_from_file_and_validation(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text('name = "mine"\nkind = "cpu"\ndescription = "d"\nbackends = ["onnxruntime"]\n'
                    'precisions = ["fp32"]\ndefault_backend = "onnxruntime"\ndefault_precision = "fp32"\n')
    assert load_profile(str(good)).name == "mine"
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('default_backend = "onnxruntime"', 'default_backend = "tensorrt"'))
    with pytest.raises(UsageError, match="default_backend must be one of its backends"):
        load_profile(str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_profile(str(broken))
    with pytest.raises(UsageError, match="missing key 'kind'"):
        DeviceProfile.from_dict({"name": "x"}, "x.toml")


def test_pick_backend() -> None:
    cpu = load_profile("cpu")
    assert cpu.pick_backend(["onnxruntime", "openvino"]) == "openvino"
    assert cpu.pick_backend(["onnxruntime"]) == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match="none is installed"):
        load_profile("x86").pick_backend(["openvino"])


def test_detect_describes_this_machine() -> None:
    info = detect()
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
