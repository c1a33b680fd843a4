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
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from ..errors import BackendUnavailableError, UsageError

KINDS = ("cpu", "jetson", "x86-gpu", "intel-gpu", "any")
#: what each precision means: (the graph it runs, what that graph's unquantized ops compute in).
#: "bf16" is the fp32 graph with a bf16 inference hint; "int8-bf16" the int8 graph (its quantized
#: ops in int8) with its other ops in bf16 (OpenVINO's hint on the NNCF IR, needs a BF16 CPU).
PRECISION_PARTS: dict[str, tuple[str, str]] = {
    "fp32": ("fp32", "fp32"),
    "fp16": ("fp16", "fp16"),
    "bf16": ("fp32", "bf16"),
    "int8": ("int8", "fp32"),
    "int8-bf16": ("int8", "bf16"),
}
PRECISIONS = tuple(PRECISION_PARTS)


def quantized(precision: str) -> bool:
    """Whether ``precision`` runs an int8 (calibrated) graph.

    Example:
        >>> quantized("int8"), quantized("int8-bf16"), quantized("bf16")
        (True, True, False)
    """
    return PRECISION_PARTS.get(precision, ("", ""))[0] == "int8"


def needs_bf16(precision: str) -> bool:
    """Whether ``precision`` computes (some of) its ops in bf16, which needs a CPU with BF16.

    Example:
        >>> needs_bf16("bf16"), needs_bf16("int8-bf16"), needs_bf16("int8")
        (True, True, False)
    """
    return PRECISION_PARTS.get(precision, ("", ""))[1] == "bf16"


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
         "default_precision", "notes", "dla_cores", "board_models", "tensorrt", "runtime")


class _Table:
    """Typed, one-line-error access to one TOML table: every message names ``where`` and the key.

    Example:
        >>> t = _Table({"a": 1}, "device profile x.toml", "runtime", ("a", "b"))
        >>> t.get("a", int), t.get("b", str, "cpu")
        (1, 'cpu')
        >>> t.get("a", str)
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: device profile x.toml: 'runtime.a' must be a str
    """

    def __init__(self, data: Any, where: str, table: str, keys: Sequence[str], what: str = ""):
        self.where, self.table = where, table
        if not isinstance(data, dict):
            raise UsageError(f"{where}: {table or what!r} must be a table")
        self.data = data
        unknown = [k for k in data if k not in keys]
        if unknown:
            raise self.fail(unknown[0], f"is not a {what or table or 'profile'} key; use {', '.join(keys)}")

    def key(self, key: str) -> str:
        return f"{self.table}.{key}" if self.table else key

    def fail(self, key: str, why: str) -> UsageError:
        return UsageError(f"{self.where}: {self.key(key)!r} {why}")

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.data:
            if default is not None:
                return default
            raise UsageError(f"{self.where}: missing key {self.key(key)!r}")
        value = self.data[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            names = " or ".join("table" if t is dict else t.__name__ for t in types)
            raise self.fail(key, f"must be a {names}")
        return value

    def strings(self, key: str, default: Any = None) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return tuple(value)


#: the largest TensorRT workspace a profile or manifest may ask for, in GiB
MAX_WORKSPACE_GB = 1024

#: the low-res decoder's prompt-axis range when a ``[tensorrt]`` table does not give ``decoder_batch``
DEFAULT_DECODER_BATCH = (1, 1, 16)


@dataclass(frozen=True)
class TensorRTSettings:
    """How TensorRT engines of a target are built (the profile's ``[tensorrt]`` table).

    Arguments:
        workspace_gb: builder workspace memory pool limit in GiB (> 0, <= MAX_WORKSPACE_GB; shared memory on Jetson).
        optimization_level: TensorRT ``builder_optimization_level`` (0..5; 3 = TensorRT's default).
        decoder_points: min / opt / max point count of the low-res decoder's optimisation profile
            (the pad point included; each >= 1, min <= opt <= max).
        fp32_layers: ONNX op types pinned to FP32 in TensorRT 10 fp16/int8 builds (TensorRT 11
            builds are strongly typed: the ONNX graph decides).
        decoder_batch: min / opt / max prompt count (axis 0, ``num_prompts``) of the low-res
            decoder's optimisation profile: ``EdgePredictor.predict_batch`` sends at most ``max``
            prompts per call. Optional (default ``[1, 1, 16]``), so settings written before the
            prompt axis existed still load.

    Example:
        >>> s = TensorRTSettings.from_dict({"workspace_gb": 1, "optimization_level": 3,
        ...     "decoder_points": [1, 4, 16], "fp32_layers": ["Softmax"]}, "bundle b/ settings")
        >>> s.decoder_points, s.to_dict()["workspace_gb"], s.decoder_batch
        ((1, 4, 16), 1.0, (1, 1, 16))
        >>> TensorRTSettings.from_dict({**s.to_dict(), "decoder_points": [4, 2, 16]}, "bundle b/ settings")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: bundle b/ settings: 'decoder_points' must be [min, opt, max] with 1 <= min <= opt <= max, got [4, 2, 16]
    """

    workspace_gb: float
    optimization_level: int
    decoder_points: tuple[int, int, int]
    fp32_layers: tuple[str, ...]
    decoder_batch: tuple[int, int, int] = DEFAULT_DECODER_BATCH

    KEYS: ClassVar[tuple[str, ...]] = ("workspace_gb", "optimization_level", "decoder_points", "fp32_layers",
                                       "decoder_batch")

    @classmethod
    def from_dict(cls, data: Any, where: str, table: str = "") -> "TensorRTSettings":
        """Validate every key (all required); errors are one line naming ``where`` and the key
        (``table.key`` when ``table`` is given, as in a profile file)."""
        t = _Table(data, where, table, cls.KEYS, "tensorrt")
        workspace = float(t.get("workspace_gb", (float, int)))
        if not workspace > 0:
            raise t.fail("workspace_gb", f"must be > 0 (GiB), got {workspace:g}")
        if not workspace <= MAX_WORKSPACE_GB:  # Infinity too (a JSON manifest may hold it)
            raise t.fail("workspace_gb", f"must be <= {MAX_WORKSPACE_GB} (GiB), got {workspace:g}")
        level = t.get("optimization_level", int)
        if not 0 <= level <= 5:
            raise t.fail("optimization_level", f"must be 0..5 (TensorRT builder_optimization_level), got {level}")
        points = _min_opt_max(t, "decoder_points", t.get("decoder_points", list))
        layers = t.strings("fp32_layers")
        if not all(layers):
            raise t.fail("fp32_layers", "must not hold empty names")
        batch = _min_opt_max(t, "decoder_batch", t.get("decoder_batch", list, list(DEFAULT_DECODER_BATCH)))
        return cls(workspace, level, points, layers, batch)

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML/JSON values; :meth:`from_dict` reads them back.

        Example:
            >>> load_profile("jetson-orin-nano").tensorrt.to_dict()
            {'workspace_gb': 1.0, 'optimization_level': 3, 'decoder_points': [1, 4, 16], 'fp32_layers': ['LayerNormalization', 'Softmax'], 'decoder_batch': [1, 16, 64]}
        """
        return {"workspace_gb": self.workspace_gb, "optimization_level": self.optimization_level,
                "decoder_points": list(self.decoder_points), "fp32_layers": list(self.fp32_layers),
                "decoder_batch": list(self.decoder_batch)}


def _min_opt_max(t: _Table, key: str, values: list) -> tuple[int, int, int]:
    """``values`` as a ``(min, opt, max)`` range of ints with 1 <= min <= opt <= max, else a one-line error."""
    if (len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            or not 1 <= values[0] <= values[1] <= values[2]):
        raise t.fail(key, f"must be [min, opt, max] with 1 <= min <= opt <= max, got {values}")
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class RuntimeDefaults:
    """Run-time defaults of a target (the profile's optional ``[runtime]`` table).

    Arguments:
        threads: intra-op threads, 0 = the runtime's default.
        device: the runner device string ("cpu", "cuda:0", "GPU", "NPU", ...).

    Example:
        >>> RuntimeDefaults.from_dict({"device": "GPU"}, "device profile x.toml", "runtime")
        RuntimeDefaults(threads=0, device='GPU')
        >>> RuntimeDefaults.from_dict({"threads": -1}, "device profile x.toml", "runtime")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: device profile x.toml: 'runtime.threads' must be >= 0 (0 = the runtime's default), got -1
    """

    threads: int = 0
    device: str = "cpu"

    KEYS: ClassVar[tuple[str, ...]] = ("threads", "device")

    @classmethod
    def from_dict(cls, data: Any, where: str, table: str = "") -> "RuntimeDefaults":
        """Validate the table (both keys optional); one-line errors name ``where`` and the key."""
        t = _Table(data, where, table, cls.KEYS, "runtime")
        threads = t.get("threads", int, 0)
        if threads < 0:
            raise t.fail("threads", f"must be >= 0 (0 = the runtime's default), got {threads}")
        device = t.get("device", str, "cpu")
        if not device.strip():
            raise t.fail("device", "must not be empty")
        return cls(threads, device)

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "device": self.device}


@dataclass(frozen=True)
class DeviceProfile:
    """What a target runs and what an export for it writes: the one description of a target.

    Arguments:
        name: profile id ("cpu", "onnx", "x86-gpu", "jetson-orin-nano", ...).
        kind: one of :data:`KINDS` ("cpu", "jetson", "x86-gpu", "intel-gpu", "any").
        description: one line for humans (``--target`` help).
        backends: runtime backends in order of preference (a bundle's ``find`` follows it).
        precisions: per backend, the precisions an export makes for it (fp32 always: it is the
            reference every reduced precision is gated against).
        graphs: per backend, the graphs an export gives it.
        default_backend / default_precision: what runs unless told (default: the first backend).
        notes: facts worth knowing when deploying there.
        dla_cores: number of Jetson DLA cores (0 where there is none).
        board_models: substrings of a Jetson's device-tree model ("AGX Orin") that make
            :func:`default_profile` pick this profile (case-insensitive; the longest match wins).
        tensorrt: TensorRT build settings (``[tensorrt]``; required when "tensorrt" is a backend).
        runtime: run-time defaults (``[runtime]``; threads 0 and device "cpu" when absent).
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
    board_models: tuple[str, ...] = ()
    tensorrt: TensorRTSettings | None = None
    runtime: RuntimeDefaults = RuntimeDefaults()
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
        top = _Table(data, where, "", _KEYS)
        backends = top.strings("backends")
        if not backends or len(set(backends)) != len(backends):
            raise top.fail("backends", "must list each backend once, at least one")
        per: dict[str, dict[str, tuple[str, ...]]] = {}
        for table in ("precisions", "graphs"):
            raw = top.get(table, dict)
            extra = [k for k in raw if k not in backends]
            if extra:
                raise top.fail(f"{table}.{extra[0]}", "names a backend missing from 'backends'")
            sub = _Table(raw, where, table, backends)
            per[table] = {b: sub.strings(b) for b in backends}
            for b in backends:
                if not per[table][b]:
                    raise sub.fail(b, "must not be empty")
        for b, ps in per["precisions"].items():
            bad = [p for p in ps if p not in PRECISIONS]
            if bad:
                raise top.fail(f"precisions.{b}", f"has unknown precisions {bad}; use {', '.join(PRECISIONS)}")
            if "fp32" not in ps:
                raise top.fail(f"precisions.{b}", "must include fp32 (the reference of every reduced precision)")
        if "tensorrt" in backends and "tensorrt" not in data:
            raise UsageError(f"{where}: missing key 'tensorrt' (the [tensorrt] build settings table: "
                             f"{', '.join(TensorRTSettings.KEYS)}), required when 'backends' has tensorrt")
        dla_cores = top.get("dla_cores", int, 0)
        if dla_cores < 0:
            raise top.fail("dla_cores", f"must be >= 0, got {dla_cores}")
        profile = cls(
            name=top.get("name", str), kind=top.get("kind", str), description=top.get("description", str),
            backends=backends, precisions=per["precisions"], graphs=per["graphs"],
            default_backend=top.get("default_backend", str, backends[0]),
            default_precision=top.get("default_precision", str),
            notes=top.strings("notes", []), dla_cores=dla_cores, board_models=top.strings("board_models", []),
            tensorrt=(TensorRTSettings.from_dict(data["tensorrt"], where, "tensorrt")
                      if "tensorrt" in data else None),
            runtime=RuntimeDefaults.from_dict(data.get("runtime", {}), where, "runtime"),
            source=source,
        )
        if profile.kind not in KINDS:
            raise top.fail("kind", f"is {profile.kind!r}, not one of {', '.join(KINDS)}")
        if profile.default_backend not in profile.backends:
            raise top.fail("default_backend", "must be one of its backends")
        if profile.default_precision not in profile.all_precisions():
            raise top.fail("default_precision", "must be one of its precisions")
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

#: CPU flags that matter for inference speed, as /proc/cpuinfo spells them, with readable names
CPU_FLAG_NAMES = {
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX-BF16", "amx_tile": "AMX", "amx_int8": "AMX-INT8",
    "asimd": "Arm NEON", "asimddp": "Arm dot-product", "bf16": "Arm BF16", "i8mm": "Arm I8MM",
}
CPU_FLAGS = tuple(CPU_FLAG_NAMES)
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86; Arm's "bf16" counts on aarch64 only
_FAST_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
_AMX_FLAGS = ("amx_bf16", "amx_int8")  # Intel AMX tiles: OpenVINO runs int8 / bf16 matmuls on them

_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_DT_MODEL = Path("/proc/device-tree/model")
_CPUINFO = Path("/proc/cpuinfo")
_NVIDIA_PROC = Path("/proc/driver/nvidia")

#: L4T release -> JetPack release (NVIDIA's JetPack archive); other R36 / R35 give "JetPack 6" / "5"
_JETPACK = {
    "36.4.4": "JetPack 6.2.1", "36.4.3": "JetPack 6.2", "36.4.0": "JetPack 6.1", "36.3.0": "JetPack 6.0",
    "36.2.0": "JetPack 6.0 DP", "35.6.0": "JetPack 5.1.4", "35.5.0": "JetPack 5.1.3",
    "35.4.1": "JetPack 5.1.2", "35.3.1": "JetPack 5.1.1", "35.2.1": "JetPack 5.1",
}


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


def l4t_release(line: str) -> tuple[str | None, str | None]:
    """("L4T R36.4.0", "JetPack 6.1") from the first line of /etc/nv_tegra_release.

    Example:
        >>> l4t_release("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64")
        ('L4T R36.4.0', 'JetPack 6.1')
        >>> l4t_release("# R36 (release), REVISION: 9.1"), l4t_release("garbage")
        (('L4T R36.9.1', 'JetPack 6'), (None, None))
    """
    import re

    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", line)
    if not found:
        return None, None
    version = f"{found[1]}.{found[2]}"
    jetpack = _JETPACK.get(version) or {"36": "JetPack 6", "35": "JetPack 5"}.get(found[1])
    return f"L4T R{version}", jetpack


def _nvml() -> list[dict[str, Any]] | None:
    """NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py), ``None`` when it is not
    installed or finds no driver: detection never fails on it."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            gpus = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                name = pynvml.nvmlDeviceGetName(handle)
                gpus.append({
                    "index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                    "memory_gb": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 2),
                    "compute_capability": f"{major}.{minor}",
                    "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
                })
            return gpus
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no GPU, an old NVML: detection reports None
        return None


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
    ``cpu_flags`` (flag -> bool for :data:`CPU_FLAGS`), ``cpu_features`` (readable names of the
    flags present), ``supports_bf16``, ``fast_int8`` (VNNI / AMX / Arm dot-product or I8MM), ``amx``
    (AMX-BF16 or AMX-INT8: OpenVINO then picks AMX kernels for int8 and bf16 matmuls itself),
    ``os``, ``machine``, ``python``, ``runtimes`` (runtime -> version or None), ``is_jetson``,
    ``jetson_model``, ``jetson_release`` (the raw first line of /etc/nv_tegra_release),
    ``l4t``, ``jetpack``, ``nvidia_driver`` (whether an NVIDIA kernel driver is loaded) and
    ``nvidia_gpus`` (NVML's list of name / memory / driver / compute capability; ``None`` without
    nvidia-ml-py or a driver).

    Example:
        >>> info = detect({"numpy": ("numpy",), "nothing": ("no-such-distribution-here",)})
        >>> info["runtimes"]["nothing"], info["runtimes"]["numpy"] is not None
        (None, True)
    """
    import os
    import platform

    model, flags = _cpuinfo(_read(_CPUINFO))
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
    arm = platform.machine() in ("aarch64", "arm64")
    l4t, jetpack = l4t_release(release[0]) if release else (None, None)
    present = {f for f in CPU_FLAGS if f in flags and (f != "bf16" or arm)}
    return {
        "cpu_model": model,
        "cores_logical": logical,
        "cores_physical": physical,
        "memory_total_gb": round(memory / 2**30, 2) if memory else None,
        "cpu_flags": {f: f in flags for f in CPU_FLAGS},
        "cpu_features": [name for f, name in CPU_FLAG_NAMES.items() if f in present],
        "supports_bf16": bool(set(_BF16_FLAGS) & flags or (arm and "bf16" in flags)),
        "fast_int8": bool(set(_FAST_INT8_FLAGS) & present),
        "amx": bool(set(_AMX_FLAGS) & present),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": {r: _runtime_version(r, dists) for r, dists in (runtimes or {}).items()},
        "is_jetson": is_jetson,
        "jetson_model": _read(_DT_MODEL).strip("\x00\n ") if is_jetson else None,
        "jetson_release": release[0] if release else None,
        "l4t": l4t,
        "jetpack": jetpack,
        "nvidia_driver": _NVIDIA_PROC.joinpath("version").exists(),
        "nvidia_gpus": _nvml(),
    }


_DETECTED: list[dict[str, Any]] = []
_DETECT_LOCK = threading.Lock()


def detected() -> dict[str, Any]:
    """:func:`detect` (without runtime versions) once per process: what auto-picks consult.

    Example:
        >>> detected() is detected()
        True
    """
    if not _DETECTED:
        with _DETECT_LOCK:  # predictors opened from several threads share one detection
            if not _DETECTED:
                _DETECTED.append(detect())
    return _DETECTED[0]


def default_profile(info: dict[str, Any] | None = None) -> str:
    """The profile name that fits this machine (or ``info`` from :func:`detect`).

    A Jetson maps to the shipped profile whose ``board_models`` match its device-tree model (the
    longest match wins; an unknown board gets the conservative ``jetson-orin-nano``: no DLA, the
    smallest workspace); any other machine with an NVIDIA GPU
    (NVML, or a loaded NVIDIA driver) gets ``x86-gpu``; one where OpenVINO sees a GPU or NPU
    (``info["runtime_devices"]``, added by ``slimsam-edge devices --detect``) gets ``intel-gpu``;
    everything else ``cpu``.

    Example:
        >>> default_profile({"is_jetson": True, "jetson_model": "NVIDIA Jetson AGX Orin Developer Kit"})
        'jetson-agx-orin'
        >>> default_profile({"is_jetson": True, "jetson_model": "NVIDIA Orin NX Developer Kit"})
        'jetson-orin-nx'
        >>> default_profile({"is_jetson": False, "nvidia_gpus": [{"name": "NVIDIA L4"}]})
        'x86-gpu'
        >>> default_profile({"is_jetson": False, "runtime_devices": {"openvino": [{"device": "GPU.0"}]}})
        'intel-gpu'
        >>> default_profile({"is_jetson": False})
        'cpu'
    """
    info = detect() if info is None else info
    if info.get("is_jetson"):
        model = str(info.get("jetson_model") or "").lower()
        matches = [(len(m), name) for name in list_profiles() for m in load_profile(name).board_models
                   if m.lower() in model]
        return max(matches)[1] if matches else "jetson-orin-nano"
    if info.get("nvidia_gpus") or info.get("nvidia_driver"):
        return "x86-gpu"
    openvino = (info.get("runtime_devices") or {}).get("openvino") or []
    if any(str(d.get("device", "")).startswith(("GPU", "NPU")) for d in openvino):
        return "intel-gpu"
    return "cpu"


def why_not(precision: str, info: dict[str, Any]) -> str | None:
    """Why this machine (``info`` from :func:`detect`) cannot run ``precision``; ``None`` if it can.

    Only the bf16 precisions (bf16, int8-bf16) depend on the CPU: they need AVX512_BF16, AMX or
    Arm BF16 (the others run everywhere, int8 faster with VNNI / AMX / dot-product).

    Example:
        >>> why_not("bf16", {"supports_bf16": False, "cpu_model": "Old CPU"})
        'bf16 needs a CPU with AVX512_BF16, AMX or Arm BF16 and Old CPU has none; use --precision fp32 (or fp16 / int8 where the bundle has them)'
        >>> why_not("int8-bf16", {"supports_bf16": False, "cpu_model": "Old CPU"})
        'int8-bf16 needs a CPU with AVX512_BF16, AMX or Arm BF16 and Old CPU has none; use --precision int8 (the same int8 graph, its other ops in fp32) or fp32'
        >>> why_not("bf16", {"supports_bf16": True}) is None, why_not("int8", {}) is None
        (True, True)
    """
    if needs_bf16(precision) and not info.get("supports_bf16"):
        cpu = info.get("cpu_model") or "this CPU"
        instead = ("int8 (the same int8 graph, its other ops in fp32) or fp32" if quantized(precision)
                   else "fp32 (or fp16 / int8 where the bundle has them)")
        return f"{precision} needs a CPU with AVX512_BF16, AMX or Arm BF16 and {cpu} has none; use --precision {instead}"
    return None


def machine_precisions(profile: DeviceProfile, info: dict[str, Any]) -> tuple[str, ...]:
    """The precisions of ``profile`` this machine (``info`` from :func:`detect`) can run.

    Example:
        >>> machine_precisions(load_profile("cpu"), {"supports_bf16": False})
        ('fp32', 'fp16', 'int8')
        >>> machine_precisions(load_profile("cpu"), {"supports_bf16": True})
        ('fp32', 'fp16', 'bf16', 'int8', 'int8-bf16')
    """
    return tuple(p for p in profile.all_precisions() if why_not(p, info) is None)
