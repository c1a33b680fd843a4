"""Target device profiles: which backends and precisions a target runs, read from TOML data files.

One file per target lives in ``slimsam_edge/devices/profiles/``; adding a target means adding a
file, not code.

Example:
    >>> p = load_profile("jetson-agx-orin")
    >>> p.default_backend, p.default_precision, p.dla_cores
    ('tensorrt', 'fp16', 2)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from ..errors import BackendUnavailableError, UsageError

KINDS = ("cpu", "jetson", "x86-gpu")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _toml() -> Any:
    """tomllib (Python >= 3.11) or tomli (3.10), else a UsageError saying what to install."""
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise UsageError("reading device profiles on Python 3.10 needs tomli; pip install tomli")


@dataclass(frozen=True)
class DeviceProfile:
    """What a target device runs.

    Arguments:
        name: profile id ("cpu", "x86", "jetson-orin-nano", ...).
        kind: "cpu", "jetson" or "x86-gpu".
        description: one line for humans.
        backends: runtime backends in order of preference.
        precisions: precisions the target supports.
        default_backend / default_precision: what an export for this target uses unless told.
        notes: facts worth knowing when deploying there.
        dla_cores: number of Jetson DLA cores (0 where there is none).
    """

    name: str
    kind: str
    description: str
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    default_backend: str
    default_precision: str
    notes: tuple[str, ...] = ()
    dla_cores: int = 0

    def pick_backend(self, installed: Iterable[str]) -> str:
        """The first backend of this profile's preference order that is ``installed``.

        Example:
            >>> load_profile("cpu").pick_backend(["onnxruntime", "torch"])
            'onnxruntime'
        """
        have = set(installed)
        for backend in self.backends:
            if backend in have:
                return backend
        raise BackendUnavailableError(
            f"profile {self.name!r} runs {', '.join(self.backends)} but none is installed; "
            f"pip install 'slimsam-edge[{self.backends[0]}]'"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "DeviceProfile":
        """Build and validate a profile from parsed TOML; errors name the file and the key.

        Example:
            >>> DeviceProfile.from_dict({"name": "t", "kind": "cpu", "description": "d",
            ...     "backends": ["onnxruntime"], "precisions": ["fp32"],
            ...     "default_backend": "onnxruntime", "default_precision": "fp32"}).name
            't'
        """

        def get(key: str, typ: type, default: Any = None) -> Any:
            if key not in data:
                if default is not None:
                    return default
                raise UsageError(f"device profile {source}: missing key {key!r}")
            value = data[key]
            if not isinstance(value, typ) or isinstance(value, bool) and typ is int:
                raise UsageError(f"device profile {source}: {key!r} must be a {typ.__name__}")
            return value

        def strings(key: str, default: Any = None) -> tuple[str, ...]:
            value = get(key, list, default)
            if not all(isinstance(v, str) for v in value):
                raise UsageError(f"device profile {source}: {key!r} must be a list of strings")
            return tuple(value)

        profile = cls(
            name=get("name", str), kind=get("kind", str), description=get("description", str),
            backends=strings("backends"), precisions=strings("precisions"),
            default_backend=get("default_backend", str),
            default_precision=get("default_precision", str),
            notes=strings("notes", []), dla_cores=get("dla_cores", int, 0),
        )
        if profile.kind not in KINDS:
            raise UsageError(f"device profile {source}: kind {profile.kind!r} is not one of {', '.join(KINDS)}")
        bad = [p for p in profile.precisions if p not in PRECISIONS]
        if bad:
            raise UsageError(f"device profile {source}: unknown precisions {bad}; use {', '.join(PRECISIONS)}")
        if not profile.backends or profile.default_backend not in profile.backends:
            raise UsageError(f"device profile {source}: default_backend must be one of its backends")
        if profile.default_precision not in profile.precisions:
            raise UsageError(f"device profile {source}: default_precision must be one of its precisions")
        return profile


def _profile_files() -> dict[str, Any]:
    folder = resources.files("slimsam_edge.devices") / "profiles"
    return {f.name[: -len(".toml")]: f for f in folder.iterdir() if f.name.endswith(".toml")}


def list_profiles() -> list[str]:
    """Names of the shipped profiles.

    Example:
        >>> "cpu" in list_profiles()
        True
    """
    return sorted(_profile_files())


def load_profile(name: str | Path) -> DeviceProfile:
    """Load a shipped profile by name, or a ``.toml`` file by path.

    Raises:
        UsageError: unknown name (the message lists the known ones) or an invalid file.

    Example:
        >>> load_profile("cpu").kind
        'cpu'
    """
    files = _profile_files()
    text_name = str(name)
    if text_name in files:
        source, text = f"{text_name}.toml", files[text_name].read_text(encoding="utf-8")
    elif text_name.endswith(".toml") and Path(text_name).is_file():
        source, text = text_name, Path(text_name).read_text(encoding="utf-8")
    else:
        raise UsageError(
            f"unknown device profile {text_name!r}; choose one of: {', '.join(sorted(files))} "
            "(or pass the path of a .toml file)"
        )
    toml = _toml()
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as err:
        raise UsageError(f"device profile {source}: invalid TOML ({err})") from None
    return DeviceProfile.from_dict(data, source)


# -- machine detection (no torch, no runtime imports) ------------------------------------------

#: CPU flags that matter for inference speed, as /proc/cpuinfo spells them
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile",
             "amx_int8", "asimd", "asimddp", "bf16", "i8mm")

#: runtime -> distributions that provide it (first installed one wins)
RUNTIME_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
}

_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_DT_MODEL = Path("/proc/device-tree/model")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo text; Arm's "Features" line counts as flags."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def _runtime_version(runtime: str) -> str | None:
    from importlib import metadata, util

    for dist in RUNTIME_DISTRIBUTIONS[runtime]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:  # e.g. JetPack's apt-installed tensorrt has no pip metadata
        found = util.find_spec(runtime) is not None
    except (ImportError, ValueError):
        found = False
    return "installed (version unknown)" if found else None


def detect() -> dict[str, Any]:
    """Describe this machine without importing torch or any runtime.

    Returns a dict with ``cpu_model``, ``cores_logical``, ``cores_physical``, ``memory_total_gb``,
    ``cpu_flags`` (flag -> bool for :data:`CPU_FLAGS`), ``supports_bf16``, ``os``, ``machine``,
    ``python``, ``runtimes`` (runtime -> version or None), ``is_jetson``, ``jetson_model``,
    ``jetson_release`` and ``nvidia_driver`` (whether an NVIDIA kernel driver is loaded).

    Example:
        >>> info = detect()
        >>> sorted(info["runtimes"])
        ['onnxruntime', 'openvino', 'tensorrt']
    """
    import os
    import platform

    model, flags = _cpuinfo(_read(Path("/proc/cpuinfo")))
    model = model or platform.processor() or platform.machine()
    try:
        import psutil

        logical = psutil.cpu_count(logical=True)
        physical = psutil.cpu_count(logical=False)
        memory = psutil.virtual_memory().total
    except ImportError:
        logical, physical, memory = os.cpu_count(), None, None
    release = _read(_TEGRA_RELEASE).strip().splitlines()
    is_jetson = _TEGRA_RELEASE.exists()
    return {
        "cpu_model": model,
        "cores_logical": logical,
        "cores_physical": physical,
        "memory_total_gb": round(memory / 2**30, 2) if memory else None,
        "cpu_flags": {f: f in flags for f in CPU_FLAGS},
        "supports_bf16": bool({"avx512_bf16", "amx_bf16"} & flags
                              or (platform.machine() == "aarch64" and "bf16" in flags)),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": {r: _runtime_version(r) for r in RUNTIME_DISTRIBUTIONS},
        "is_jetson": is_jetson,
        "jetson_model": _read(_DT_MODEL).strip("\x00\n ") if is_jetson else None,
        "jetson_release": release[0] if release else None,
        "nvidia_driver": Path("/proc/driver/nvidia/version").exists(),
    }


def default_profile(info: dict[str, Any] | None = None) -> str:
    """The profile name that fits this machine (or ``info`` from :func:`detect`).

    A Jetson maps to its profile by board model (an unknown Orin board gets the conservative
    ``jetson-orin-nano``: no DLA); everything else gets ``cpu``.

    Example:
        >>> default_profile({"is_jetson": True, "jetson_model": "NVIDIA Jetson AGX Orin Developer Kit"})
        'jetson-agx-orin'
        >>> default_profile({"is_jetson": False})
        'cpu'
    """
    info = detect() if info is None else info
    if not info.get("is_jetson"):
        return "cpu"
    model = str(info.get("jetson_model") or "").lower()
    if "agx orin" in model:
        return "jetson-agx-orin"
    return "jetson-orin-nano"
