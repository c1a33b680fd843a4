"""The values a bundle's ``manifest.json`` may hold: parsing limits, number ranges and the
building blocks of each backend's artifact ``extra`` schema (docs/bundle.md, "Schema").

A manifest comes from whoever sent the bundle; nothing in it reaches a runtime or an allocation
unchecked. :func:`parse_json` reads the text with bounded nesting, finite numbers only (JSON has
no NaN or Infinity; Python's reader accepts them, and ``1e400`` as infinity) and integers of at
most :data:`MAX_INT_DIGITS` digits. :func:`number_in` checks a number against a range.
An artifact's ``extra`` is checked against its backend's declaration
(:attr:`slimsam_edge.runtimes.plugin.Backend.artifact_extra`: key -> :class:`ExtraKey`) by
:func:`check_extra`: a key the backend does not declare is refused, so a manifest cannot name
runtime settings (ONNX Runtime providers, OpenVINO properties such as ``CACHE_DIR``); only keys
marked ``runtime`` are handed to a runner. Every refusal is one line naming the manifest, the
key and, for ``extra``, the artifact, and says to re-export the bundle. Torch-free, numpy-free.

Example:
    >>> parse_json('{"a": [1, 2.5]}', "manifest.json")
    {'a': [1, 2.5]}
    >>> parse_json('{"a": NaN}', "manifest.json")
    Traceback (most recent call last):
    ...
    slimsam_edge.errors.BundleError: manifest.json: key 'a' holds NaN, which is not a finite number; re-export the bundle
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import BundleError

RE_EXPORT = "re-export the bundle"

#: deepest nesting of objects and arrays a manifest may have (an export writes at most 6 levels)
MAX_DEPTH = 32
#: longest integer literal (digits): Python refuses > 4300 digits with a ValueError of its own
MAX_INT_DIGITS = 18
#: the largest encoder input side a manifest may declare (SAM: 1024); larger is refused before
#: any buffer of image_size² pixels is allocated
MAX_IMAGE_SIZE = 4096
#: per-channel pixel mean on the 0..255 scale the predictor feeds
PIXEL_MEAN_RANGE = (0.0, 255.0)
#: per-channel pixel std: > 0 and small enough a divisor that (pixel - mean) / std of any 8-bit
#: pixel stays within fp16's range (255 / 0.01 = 25500 < 65504)
PIXEL_STD_RANGE = (0.01, 255.0)
#: mask logit threshold (SAM: 0.0); beyond +-100 the sigmoid selects every pixel or none
MASK_THRESHOLD_RANGE = (-100.0, 100.0)


def _refuse(where: str, what: str) -> BundleError:
    return BundleError(f"{where}: {what}; {RE_EXPORT}")


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` for manifests: one-line BundleError for bad JSON, nesting deeper than
    :data:`MAX_DEPTH`, NaN / Infinity / overflowing floats and over-long integers.

    Example:
        >>> parse_json("[" * 40 + "]" * 40, "m.json")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: m.json: nested deeper than 32 levels; re-export the bundle
    """
    depth, in_string, escaped = 0, False, False
    for ch in text:  # bounded before the recursive parser sees it (100,000 '[' raised RecursionError)
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(source, f"nested deeper than {MAX_DEPTH} levels")
        elif ch in "]}":
            depth -= 1

    def real(literal: str) -> Any:
        value = float(literal)
        return value if math.isfinite(value) else _NonFinite(literal[:20])

    def integer(literal: str) -> Any:
        digits = len(literal.lstrip("-"))
        return int(literal) if digits <= MAX_INT_DIGITS else _NonFinite(f"an integer of {digits} digits")

    try:
        data = json.loads(text, parse_constant=_NonFinite, parse_float=real, parse_int=integer)
    except json.JSONDecodeError as err:
        raise _refuse(source, f"not valid JSON (line {err.lineno}: {err.msg})") from None
    except RecursionError:  # pragma: no cover - the depth scan above refuses first
        raise _refuse(source, "nested too deeply") from None
    bad = _first_non_finite(data)
    if bad is not None:
        path, literal = bad
        where = f"key {path!r} holds" if path else "holds"
        limit = f" (at most {MAX_INT_DIGITS} digits)" if literal.startswith("an integer") else \
            ", which is not a finite number"
        raise _refuse(source, f"{where} {literal}{limit}")
    return data


class _NonFinite(str):
    """What the parser puts where a number is not finite (NaN, Infinity, 1e400) or too long, so
    the refusal can name its key."""


def _first_non_finite(data: Any) -> tuple[str, str] | None:
    """``(dotted key path, literal)`` of the first :class:`_NonFinite` in ``data`` (depth bounded
    by the scan in :func:`parse_json`, walked without recursion)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _NonFinite):
            return path, str(value)
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def finite_or_null(data: Any) -> Any:
    """``data`` with every float that is not finite replaced by ``None`` (what a manifest writes).

    Example:
        >>> finite_or_null({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"})
        {'a': [1.0, None], 'b': None, 'c': 'x'}
    """
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_null(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_null(v) for v in data]
    return data


def number_in(value: Any, bounds: tuple[float, float], key: str, where: str) -> float:
    """``value`` as a float when it is a finite number within ``bounds`` (inclusive), else a
    one-line BundleError naming ``key``.

    Example:
        >>> number_in(58.4, PIXEL_STD_RANGE, "pixel_std", "m.json")
        58.4
        >>> number_in(0, PIXEL_STD_RANGE, "pixel_std", "m.json")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: m.json: key 'pixel_std' holds 0, outside 0.01..255.0; re-export the bundle
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _refuse(where, f"key {key!r} must hold finite numbers")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise _refuse(where, f"key {key!r} holds {value:.6g}, outside {lo}..{hi}")
    return float(value)


def image_size(value: Any, where: str) -> int:
    """The manifest's ``image_size``: an integer in 1..:data:`MAX_IMAGE_SIZE`.

    Example:
        >>> image_size(100000, "m.json")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: m.json: key 'image_size' is 100000, outside 1..4096 pixels; re-export the bundle
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(where, "key 'image_size' must be an integer")
    if not 1 <= value <= MAX_IMAGE_SIZE:
        raise _refuse(where, f"key 'image_size' is {value}, outside 1..{MAX_IMAGE_SIZE} pixels")
    return value


# -- artifact extra ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtraKey:
    """One key a backend's artifacts may carry in ``extra``.

    Arguments:
        describe: what the value must be, said when it is not ("a string", "one of fp32, ...").
        check: True for an acceptable value.
        runtime: handed to the runner (``RunnerOptions.extra``) after the check; False for a
            description that stays in the manifest (method, calibration, ...).
        value: what the runner gets of an accepted value (default: the value itself).
    """

    describe: str
    check: Callable[[Any], bool]
    runtime: bool = False
    value: Callable[[Any], Any] | None = None


def _is_text(v: Any, limit: int = 4096) -> bool:
    return isinstance(v, str) and len(v) <= limit


def text(*, runtime: bool = False, limit: int = 4096) -> ExtraKey:
    """A string of at most ``limit`` characters.

    Example:
        >>> text().check("fp32 IR"), text().check(3)
        (True, False)
    """
    return ExtraKey(f"a string of at most {limit} characters", lambda v: _is_text(v, limit), runtime)


def texts(*, limit: int = 256) -> ExtraKey:
    """A list of at most ``limit`` strings.

    Example:
        >>> texts().check(["Softmax"]), texts().check("Softmax")
        (True, False)
    """
    return ExtraKey(f"a list of at most {limit} strings",
                    lambda v: isinstance(v, list) and len(v) <= limit and all(_is_text(s) for s in v))


def one_of(values: Iterable[str], *, runtime: bool = False) -> ExtraKey:
    """One of ``values``.

    Example:
        >>> one_of(["fp32", "bf16"]).check("int4")
        False
    """
    allowed = tuple(values)
    return ExtraKey("one of " + ", ".join(allowed), lambda v: isinstance(v, str) and v in allowed, runtime)


def count(hi: int = 10**9) -> ExtraKey:
    """An integer in 0..``hi``.

    Example:
        >>> count().check(300), count().check(-1), count().check(1.5)
        (True, False, False)
    """
    return ExtraKey(f"an integer in 0..{hi}", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= hi)


def record(*, keys: Iterable[str] = (), runtime: bool = False) -> ExtraKey:
    """An object whose ``keys`` (absent allowed) are strings or null; other keys are free-form
    descriptions. With ``runtime``, the runner gets only ``keys``.

    Example:
        >>> r = record(keys=["gpu"], runtime=True)
        >>> r.check({"gpu": "Orin", "builder": {"precision": "fp16"}}), r.check({"gpu": 3}), r.check("Orin")
        (True, False, False)
        >>> r.value({"gpu": "Orin", "builder": {}})
        {'gpu': 'Orin'}
    """
    named = tuple(keys)
    return ExtraKey(
        "an object" + (" whose " + ", ".join(named) + " are strings" if named else ""),
        lambda v: isinstance(v, dict) and all(v.get(k) is None or _is_text(v.get(k)) for k in named),
        runtime, (lambda v: {k: v.get(k) for k in named}) if named else None)


def check_extra(extra: Mapping[str, Any], schema: Mapping[str, ExtraKey], where: str) -> dict[str, Any]:
    """Check an artifact's ``extra`` against its backend's ``schema``; return what the runner gets
    (the ``runtime`` keys present). ``where`` names the manifest and the artifact.

    Example:
        >>> schema = {"method": text(), "tensorrt_version": text(runtime=True)}
        >>> check_extra({"method": "x", "tensorrt_version": "10.3"}, schema, "m.json: artifact e/trt/fp16")
        {'tensorrt_version': '10.3'}
        >>> check_extra({"config": {"CACHE_DIR": "/tmp"}}, schema, "m.json: artifact e/trt/fp16")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: m.json: artifact e/trt/fp16: extra key 'config' is not one its backend reads (method, tensorrt_version); re-export the bundle
    """
    out: dict[str, Any] = {}
    for key, value in extra.items():
        spec = schema.get(key)
        if spec is None:
            allowed = ", ".join(sorted(schema)) or "none"
            raise _refuse(where, f"extra key {key!r} is not one its backend reads ({allowed})")
        if not spec.check(value):
            raise _refuse(where, f"extra.{key} must be {spec.describe}")
        if spec.runtime:
            out[key] = spec.value(value) if spec.value is not None else value
    return out
