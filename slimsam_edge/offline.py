"""No network and nothing written under the user's home: the runtimes' telemetry switched off.

Two libraries this package imports phone home unless told not to (seen with ``strace -f``):

- **OpenVINO** (``import openvino`` imports its conversion tools, which start telemetry): a
  forked child sends an event to a third-party analytics service on every import and on every
  model conversion (NNCF quantization too), and a client id and usage counter are kept in
  ``~/intel/``. OpenVINO's tools and NNCF both fall back to a no-op stub when the optional
  ``openvino_telemetry`` package cannot be imported; :func:`ensure_offline` makes it
  unimportable (its documented opt-out, ``opt_in_out --opt_out``, would itself write under home).
- **ONNX Runtime** (>= 1.29 on Linux / macOS): a 1DS telemetry uploader with a device id and a
  usage database under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``, created at the first
  session. ``ORT_DISABLE_TELEMETRY=1`` set before that is its full opt-out: no uploader, no id,
  no database.

:func:`ensure_offline` applies both before any runtime is imported: importing this module calls
it, the CLI imports it first, and :mod:`slimsam_edge.runtimes` (every runner, converter and
quantizer lives under it) imports it too. It changes only this process and its children;
``SLIMSAM_EDGE_ALLOW_TELEMETRY=1`` leaves the libraries' own defaults alone. It is idempotent
and imports nothing heavy. tests/hardening/test_offline.py checks it (sockets blocked in process;
an empty home directory stays empty in a subprocess running every command).

Example:
    >>> ensure_offline() in (True, False)
    True
    >>> import os
    >>> os.environ.get("ORT_DISABLE_TELEMETRY") == "1" or os.environ.get(ALLOW_ENV) == "1"
    True
"""

from __future__ import annotations

import os
import sys

#: set this to 1 to keep the runtimes' telemetry defaults (nothing here is then changed)
ALLOW_ENV = "SLIMSAM_EDGE_ALLOW_TELEMETRY"

#: environment switches, set before a runtime starts: variable -> value (each library's own opt-out)
ENV_SWITCHES: dict[str, str] = {
    "ORT_DISABLE_TELEMETRY": "1",  # ONNX Runtime: no 1DS uploader, device id or ~/.cache database
}

#: optional modules made unimportable: whoever imports them falls back to its own no-op stub
BLOCKED_MODULES: tuple[str, ...] = (
    "openvino_telemetry",  # OpenVINO's tools (ovc) and NNCF: events over the network, ids in ~/intel
)

_applied = False


def ensure_offline() -> bool:
    """Switch the runtimes' telemetry off in this process (idempotent); ``False`` when
    ``SLIMSAM_EDGE_ALLOW_TELEMETRY=1`` asked to leave it as the libraries ship it.

    A telemetry module that was imported before this ran (by code outside this package) is left
    loaded: import ``slimsam_edge`` code before ``openvino`` to be covered from the start.
    """
    global _applied
    if os.environ.get(ALLOW_ENV) == "1":
        return False
    if not _applied:
        os.environ.update(ENV_SWITCHES)
        for name in BLOCKED_MODULES:
            if sys.modules.get(name) is None:
                sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
        _applied = True
    return True


ensure_offline()
