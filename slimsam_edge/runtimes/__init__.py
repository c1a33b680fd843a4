"""Inference backends behind one :class:`Runner` interface (no torch import here)."""

from .base import (
    FeedDict,
    Runner,
    RunnerOptions,
    TensorSpec,
    open_runner,
    register_runner,
    registered_backends,
    runner_class,
)

__all__ = [
    "FeedDict",
    "Runner",
    "RunnerOptions",
    "TensorSpec",
    "open_runner",
    "register_runner",
    "registered_backends",
    "runner_class",
]
