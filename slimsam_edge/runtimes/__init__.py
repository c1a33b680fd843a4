"""Inference backends behind one :class:`Runner` interface, one folder per backend (no torch here).

Example:
    >>> from slimsam_edge.runtimes import registered_backends
    >>> "onnxruntime" in registered_backends()
    True
"""

from .. import offline  # noqa: F401  (first: telemetry off before a runner imports its runtime)
from .base import FeedDict, Runner, RunnerOptions, TensorSpec
from .plugin import Backend, BuildContext, Converter, OnnxAsIs, Recipe
from .registry import (
    BUILTIN_BACKENDS,
    backends,
    get_backend,
    open_runner,
    recipes,
    register_backend,
    registered_backends,
    runner_class,
    runtime_devices,
    runtime_distributions,
    unregister_backend,
)
from .tuning import PERFORMANCE_HINTS, RuntimeTuning

__all__ = [
    "BUILTIN_BACKENDS", "PERFORMANCE_HINTS", "Backend", "BuildContext", "Converter", "FeedDict", "OnnxAsIs", "Recipe",
    "Runner", "RunnerOptions", "TensorSpec", "backends", "get_backend", "open_runner", "recipes",
    "register_backend", "registered_backends", "runner_class", "runtime_devices", "runtime_distributions",
    "RuntimeTuning", "unregister_backend",
]
