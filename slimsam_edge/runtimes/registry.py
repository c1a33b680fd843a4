"""The one list of backends, and lookups over it. Torch-free and runtime-free to import.

Adding a backend = one folder under ``runtimes/`` defining ``BACKEND = Backend(...)`` plus one
line in :data:`BUILTIN_BACKENDS` (see docs/backends.md). A plugin outside the package can call
:func:`register_backend` instead.

Example:
    >>> registered_backends()
    ['onnxruntime', 'onnxruntime-cuda', 'openvino', 'tensorrt', 'torch']
    >>> get_backend("openvino").recipe("bf16").runner_precision
    'bf16'
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, UsageError
from .base import Runner, RunnerOptions
from .plugin import Backend, Recipe

#: the built-in backends: one module (a folder of this package, or a dotted path) per line
BUILTIN_BACKENDS: list[str] = [
    "onnxruntime",
    "openvino",
    "tensorrt",
    "torch",
    "onnxruntime_cuda",
]

_REGISTRY: dict[str, Backend] = {}
_LOADED: set[str] = set()


def register_backend(backend: Backend) -> Backend:
    """Make ``backend`` available by its name (the built-ins are registered on first use).

    Example:
        >>> from slimsam_edge.runtimes.base import Runner
        >>> class EchoRunner(Runner): ...
        >>> b = register_backend(Backend("echo-doc", runner=EchoRunner))
        >>> "echo-doc" in registered_backends()
        True
        >>> unregister_backend("echo-doc")
    """
    backend.runner.backend = backend.name
    _REGISTRY[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Forget a registered backend (tests; a built-in comes back only in a new process)."""
    _REGISTRY.pop(name, None)


def _load_builtin_backends() -> None:
    for module in BUILTIN_BACKENDS:
        if module in _LOADED:
            continue
        path = module if "." in module else f"{__package__}.{module}"
        register_backend(importlib.import_module(path).BACKEND)
        _LOADED.add(module)


def backends() -> dict[str, Backend]:
    """Every registered backend by name, in registration order."""
    _load_builtin_backends()
    return dict(_REGISTRY)


def registered_backends() -> list[str]:
    """Names of the registered backends, sorted."""
    return sorted(backends())


def get_backend(name: str) -> Backend:
    """The backend called ``name`` or a one-line UsageError naming the choices."""
    found = backends().get(name)
    if found is None:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(registered_backends())}")
    return found


def runner_class(backend: str) -> type[Runner]:
    """Return the runner class for ``backend`` or raise a one-line error naming the choices."""
    b = get_backend(backend)
    if not b.runner.available():
        hint = f"pip install 'slimsam-edge[{b.extra}]'" if b.extra else "install its package"
        raise BackendUnavailableError(f"backend {backend!r} is not installed; {hint}")
    return b.runner


def open_runner(
    artifact: Path | str | Any,
    *,
    backend: str | None = None,
    options: RunnerOptions | None = None,
) -> Runner:
    """Make a (not yet activated) runner for ``artifact``; ``backend=None`` picks by suffix.

    Example:
        >>> open_runner("model.xml").backend
        'openvino'
    """
    if backend is None:
        suffix = Path(str(artifact)).suffix.lower()
        matches = [n for n, b in backends().items() if suffix in b.suffixes]
        if not matches:
            raise UsageError(f"cannot tell which backend runs {artifact}; pass backend=...")
        backend = sorted(matches)[0]
    return runner_class(backend)(artifact, options)


def recipes() -> dict[tuple[str, str], Recipe]:
    """``{(backend, precision): recipe}`` over every registered backend.

    Example:
        >>> sorted(p for b, p in recipes() if b == "onnxruntime")
        ['fp16', 'int8']
    """
    return {(b.name, r.precision): r for b in backends().values() for r in b._recipes.values()}


def runtime_distributions() -> dict[str, tuple[str, ...]]:
    """``{backend: pip distributions}`` for :func:`slimsam_edge.devices.detect`.

    Example:
        >>> runtime_distributions()["openvino"]
        ('openvino',)
    """
    return {n: b.distributions for n, b in backends().items() if b.distributions}


def runtime_devices() -> dict[str, list[dict[str, Any]]]:
    """``{backend: devices}`` from each installed backend that can list its devices.

    Backends that are not installed or have no ``describe_devices`` are left out; a runtime that
    fails while listing gives ``[{"error": "<one line>"}]`` (detection never fails).

    Example:
        >>> "CPU" in [d["device"] for d in runtime_devices().get("openvino", [{"device": "CPU"}])]
        True
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for name, b in backends().items():
        if b.describe_devices is None or not b.runner.available():
            continue
        try:
            found[name] = b.describe_devices()
        except Exception as err:  # noqa: BLE001 - a broken driver must not break detection
            found[name] = [{"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}]
    return found
