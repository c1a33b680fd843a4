"""What an engine is tied to (TensorRT version, GPU and compute capability, JetPack / L4T release),
recorded when ``slimsam-edge build`` makes it and compared before a runner loads it (torch-free).

Example:
    >>> built = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "l4t": "R36.4.0"}
    >>> mismatch(built, {**built, "tensorrt": "10.3.0"}) is None
    True
    >>> print(mismatch(built, {**built, "gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}))
    engine built on Orin (sm 8.7) / TensorRT 10.3.0 / L4T R36.4.0; this machine is NVIDIA GeForce RTX 4090 (sm 8.9) / TensorRT 10.3.0 / L4T R36.4.0
"""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedOnThisMachineError
from .cuda import cuda_check

#: the keys compared at load (builder settings are recorded too, but do not tie the engine)
TIED_TO = ("tensorrt", "gpu", "compute_capability", "l4t")


def gpu_properties(cudart: Any, index: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of CUDA device ``index``; a one-line error where there is no NVIDIA GPU.

    Illustration (not run as a doctest: it needs files or a model)::

        gpu_properties(import_cudart())
        # -> ('Orin', '8.7')
    """
    err, count = cudart.cudaGetDeviceCount()[:2]
    if err != cudart.cudaError_t.cudaSuccess or not count:
        _, text = cudart.cudaGetErrorString(err)
        why = text.decode() if isinstance(text, bytes) else str(text)
        raise UnsupportedOnThisMachineError(
            f"no NVIDIA GPU usable here ({why if err != cudart.cudaError_t.cudaSuccess else '0 CUDA devices'}); "
            "TensorRT engines are built and run on an NVIDIA GPU (check the driver with nvidia-smi, or "
            "on Jetson that JetPack is installed)")
    if not 0 <= index < count:
        raise UnsupportedOnThisMachineError(f"CUDA device {index} does not exist here ({count} device(s): 0..{count - 1})")
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return name.split("\x00")[0].strip(), f"{props.major}.{props.minor}"


def l4t_release() -> str | None:
    """The Jetson L4T (JetPack) release line, ``None`` off Jetson."""
    from ...devices import detect

    return detect().get("jetson_release")


def machine_fingerprint(trt: Any, cudart: Any, index: int = 0) -> dict[str, Any]:
    """This machine's ``{"tensorrt", "gpu", "compute_capability", "l4t"}``.

    Illustration (not run as a doctest: it needs files or a model)::

        machine_fingerprint(import_tensorrt(), import_cudart())
        # -> {'tensorrt': '10.3.0', 'gpu': 'Orin', 'compute_capability': '8.7', 'l4t': '# R36 ...'}
    """
    name, cc = gpu_properties(cudart, index)
    return {"tensorrt": str(trt.__version__), "gpu": name, "compute_capability": cc, "l4t": l4t_release()}


def _describe(fp: dict[str, Any]) -> str:
    l4t = f"L4T {fp['l4t']}" if fp.get("l4t") else "not a Jetson"
    return f"{fp.get('gpu')} (sm {fp.get('compute_capability')}) / TensorRT {fp.get('tensorrt')} / {l4t}"


def _same_version(a: Any, b: Any) -> bool:
    return str(a).split(".")[:3] == str(b).split(".")[:3]


def mismatch(built: dict[str, Any], here: dict[str, Any]) -> str | None:
    """``None`` when an engine built as ``built`` runs ``here``; else the one-line difference."""
    same = (_same_version(built.get("tensorrt"), here.get("tensorrt"))
            and all(built.get(k) == here.get(k) for k in TIED_TO if k != "tensorrt"))
    return None if same else f"engine built on {_describe(built)}; this machine is {_describe(here)}"
