"""Typed errors. Each maps to a CLI exit code and prints as one line.

Every error the user can cause (bad file, bad flag, missing package) is a subclass of
:class:`SlimSamEdgeError` with ``exit_code = 2``; the CLI prints ``error: <message>`` and exits
with that code, without a traceback unless ``--debug`` is given.

Example:
    >>> try:
    ...     raise CheckpointError("model.pth: file not found; pass the path of a SAM checkpoint")
    ... except SlimSamEdgeError as err:
    ...     err.exit_code
    2
"""

from __future__ import annotations

import os


#: set (not "0") by ``slimsam-edge --debug``: tracebacks, and native libraries' own log lines
DEBUG_ENV = "SLIMSAM_EDGE_DEBUG"


def debug_enabled() -> bool:
    """Whether ``--debug`` (or ``SLIMSAM_EDGE_DEBUG=1``) asked for tracebacks and native logs."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class SlimSamEdgeError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code: int = 2


class UsageError(SlimSamEdgeError):
    """A flag or argument has an invalid value."""


class UnsupportedOnThisMachineError(UsageError):
    """A valid request this machine cannot honour (e.g. bf16 on a CPU without BF16).

    Raised only by backends, for a missing capability of the machine; the accuracy gate may skip
    (and records) a pair that fails with it, never one that fails with a plain UsageError.
    """


class ConcurrentUseError(UsageError):
    """An object that must not be shared between threads was used by two threads at once."""


class CheckpointError(SlimSamEdgeError):
    """A checkpoint is missing, corrupt, of another model family, or unsafe to load."""


class ModelTypeError(SlimSamEdgeError):
    """An unknown model type, or weights that do not match the requested model type / spec."""


class SpecError(SlimSamEdgeError):
    """An architecture spec (JSON) is malformed or inconsistent."""


class ImageError(SlimSamEdgeError):
    """An image cannot be read or decoded."""


class PromptError(SlimSamEdgeError):
    """A prompt (points, labels, box, mask) is malformed or outside the image."""


class ExportError(SlimSamEdgeError):
    """Exporting a graph failed."""


class ValidationError(ExportError):
    """An exported artifact does not reproduce the reference model; lists every mismatch."""

    def __init__(self, message: str, failures: list[str] | None = None):
        super().__init__(message)
        self.failures = list(failures or [])


class AccuracyGateError(ExportError):
    """A reduced-precision artifact disagrees with FP32 more than the gate allows."""

    def __init__(self, message: str, results: dict | None = None):
        super().__init__(message)
        self.results = dict(results or {})


class BundleError(SlimSamEdgeError):
    """A bundle is missing, malformed, or its files do not match their recorded hashes."""


class BackendUnavailableError(SlimSamEdgeError):
    """A runtime backend's package is not installed, or the device it needs is absent."""


class DataError(SlimSamEdgeError):
    """A data folder is empty or an annotation is unusable in --strict mode."""


class RunnerError(SlimSamEdgeError):
    """A feed does not match a runner's inputs (names, dtypes, shapes)."""
