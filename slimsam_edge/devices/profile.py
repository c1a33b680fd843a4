"""Targets: which backends (in preference order), precisions and graphs a target gets, from TOML files.

One file per target lives in ``slimsam_edge/devices/profiles/`` (``--target NAME``); any other
file works by path (``--target path/to/board.toml``). Adding a target means adding a file, not
code. Backend names are checked against the runtime registry by the export (a layer above).

Example:
    >>> p = load_profile("jetson-agx-orin")
    >>> p.default_backend, p.default_precision, p.dla_cores
    ('tensorrt', 'fp16', 2)
    >>> load_profile("cpu").backends
    ('onnxruntime', 'openvino')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import BackendUnavailableError, UsageError

KINDS = ("cpu", "jetson", "x86-gpu", "any")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _toml() -> Any:
    """tomllib (Python >= 3.11) or tomli (3.10), else a UsageError saying what to install."""
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise UsageError("reading device profiles on Python 3.10 needs tomli; pip install tomli")


#: every key a profile file may hold; anything else is a typo and is refused
_KEYS = ("name", "kind", "description", "backends", "precisions", "graphs", "default_backend",
         "default_precision", "notes", "dla_cores")


@dataclass(frozen=True)
class DeviceProfile:
    """What a target runs and what an export for it writes: the one description of a target.

    Arguments:
        name: profile id ("cpu", "onnx", "x86", "jetson-orin-nano", ...).
        kind: "cpu", "jetson" or "x86-gpu".
        description: one line for humans (``--target`` help).
        backends: runtime backends in order of preference (a bundle's ``find`` follows it).
        precisions: per backend, the precisions an export makes for it (fp32 always: it is the
            reference every reduced precision is gated against).
        graphs: per backend, the graphs an export gives it.
        default_backend / default_precision: what runs unless told (default: the first backend).
        notes: facts worth knowing when deploying there.
        dla_cores: number of Jetson DLA cores (0 where there is none).
        source: the file it was read from.
    """

    name: str
    kind: str
    description: str
    backends: tuple[str, ...]
    precisions: dict[str, tuple[str, ...]]
    graphs: dict[str, tuple[str, ...]]
    default_backend: str
    default_precision: str
    notes: tuple[str, ...] = ()
    dla_cores: int = 0
    source: str = "<dict>"

    def all_precisions(self) -> tuple[str, ...]:
        """Every precision some backend of the target gets, in :data:`PRECISIONS` order.

        Example:
            >>> load_profile("onnx").all_precisions()
            ('fp32', 'fp16', 'int8')
        """
        have = {p for ps in self.precisions.values() for p in ps}
        return tuple(p for p in PRECISIONS if p in have)

    def backends_for(self, precision: str) -> tuple[str, ...]:
        """The backends that get ``precision`` artifacts, in preference order.

        Example:
            >>> load_profile("cpu").backends_for("bf16")
            ('openvino',)
        """
        return tuple(b for b in self.backends if precision in self.precisions[b])

    def pick_backend(self, installed: Iterable[str]) -> str:
        """The first backend of this profile's preference order that is ``installed``.

        Example:
            >>> load_profile("cpu").pick_backend(["openvino", "torch"])
            'openvino'
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
            ...     "backends": ["onnxruntime"], "precisions": {"onnxruntime": ["fp32"]},
            ...     "graphs": {"onnxruntime": ["image_encoder"]}, "default_precision": "fp32"}).name
            't'
        """
        where = f"device profile {source}"

        def fail(key: str, why: str) -> UsageError:
            return UsageError(f"{where}: {key!r} {why}")

        unknown = [k for k in data if k not in _KEYS]
        if unknown:
            raise fail(unknown[0], f"is not a profile key; use {', '.join(_KEYS)}")

        def get(key: str, typ: type, default: Any = None) -> Any:
            if key not in data:
                if default is not None:
                    return default
                raise UsageError(f"{where}: missing key {key!r}")
            value = data[key]
            if not isinstance(value, typ) or isinstance(value, bool) and typ is int:
                raise fail(key, f"must be a {'table' if typ is dict else typ.__name__}")
            return value

        def strings(value: Any, key: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail(key, "must be a list of strings")
            return tuple(value)

        backends = strings(get("backends", list), "backends")
        if not backends or len(set(backends)) != len(backends):
            raise fail("backends", "must list each backend once, at least one")
        per: dict[str, dict[str, tuple[str, ...]]] = {}
        for table in ("precisions", "graphs"):
            raw = get(table, dict)
            extra = [k for k in raw if k not in backends]
            if extra:
                raise fail(f"{table}.{extra[0]}", "names a backend missing from 'backends'")
            per[table] = {}
            for b in backends:
                if b not in raw:
                    raise UsageError(f"{where}: missing key '{table}.{b}'")
                per[table][b] = strings(raw[b], f"{table}.{b}")
                if not per[table][b]:
                    raise fail(f"{table}.{b}", "must not be empty")
        for b, ps in per["precisions"].items():
            bad = [p for p in ps if p not in PRECISIONS]
            if bad:
                raise fail(f"precisions.{b}", f"has unknown precisions {bad}; use {', '.join(PRECISIONS)}")
            if "fp32" not in ps:
                raise fail(f"precisions.{b}", "must include fp32 (the reference of every reduced precision)")
        profile = cls(
            name=get("name", str), kind=get("kind", str), description=get("description", str),
            backends=backends, precisions=per["precisions"], graphs=per["graphs"],
            default_backend=get("default_backend", str, backends[0]),
            default_precision=get("default_precision", str),
            notes=strings(get("notes", list, []), "notes"), dla_cores=get("dla_cores", int, 0),
            source=source,
        )
        if profile.kind not in KINDS:
            raise fail("kind", f"is {profile.kind!r}, not one of {', '.join(KINDS)}")
        if profile.default_backend not in profile.backends:
            raise fail("default_backend", "must be one of its backends")
        if profile.default_precision not in profile.all_precisions():
            raise fail("default_precision", "must be one of its precisions")
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
            f"unknown target {text_name!r}; choose one of: {', '.join(sorted(files))}, or add one: pass "
            "the path of a .toml profile (see docs/backends.md)"
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


def _runtime_version(runtime: str, distributions: Sequence[str]) -> str | None:
    from importlib import metadata, util

    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:  # e.g. JetPack's apt-installed tensorrt has no pip metadata
        found = util.find_spec(runtime) is not None
    except (ImportError, ValueError):
        found = False
    return "installed (version unknown)" if found else None


def detect(runtimes: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Describe this machine without importing torch or any runtime.

    ``runtimes`` maps each runtime to the pip distributions that provide it; the runtime registry
    (a layer above) owns that table: pass
    :func:`slimsam_edge.runtimes.runtime_distributions` ``()`` to get their versions.

    Returns a dict with ``cpu_model``, ``cores_logical``, ``cores_physical``, ``memory_total_gb``,
    ``cpu_flags`` (flag -> bool for :data:`CPU_FLAGS`), ``supports_bf16``, ``os``, ``machine``,
    ``python``, ``runtimes`` (runtime -> version or None), ``is_jetson``, ``jetson_model``,
    ``jetson_release`` and ``nvidia_driver`` (whether an NVIDIA kernel driver is loaded).

    Example:
        >>> info = detect({"numpy": ("numpy",), "nothing": ("no-such-distribution-here",)})
        >>> info["runtimes"]["nothing"], info["runtimes"]["numpy"] is not None
        (None, True)
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
        "runtimes": {r: _runtime_version(r, dists) for r, dists in (runtimes or {}).items()},
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
