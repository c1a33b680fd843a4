"""Energy meters: the joules a stretch of work used, from whatever this machine exposes.

Three sources, one small class each in :data:`METERS`:

- ``tegrastats`` (Jetson): the board's power rails, sampled by NVIDIA's ``tegrastats`` tool and
  integrated over time. The board's input rail (``VDD_IN`` on Orin Nano / NX, ``POM_5V_IN`` on the
  original Nano) is the whole module; where a board has none (AGX Orin, Xavier) the rails are
  summed, as jetson-stats does.
- ``rapl`` (x86): the package energy counters of ``/sys/class/powercap/intel-rapl:*`` (Intel, and
  AMD Zen through the same driver), wrap-around handled. Since 2020 most kernels make them
  root-only; the meter then says so.
- ``nvml`` (NVIDIA GPU): NVML's total-energy counter (Volta and newer), summed over the GPUs.

A meter that cannot read says why, and the reading is ``None`` -- never 0 -- so a report prints
"n/a" with the reason. Nothing here imports a runtime or torch, and nothing runs through a shell.

Example:
    >>> sample = parse_tegrastats("RAM 2051/7620MB (lfb 1052x4MB) CPU [2%@1510,off] "
    ...     "VDD_IN 4933mW/4900mW VDD_CPU_GPU_CV 645mW/640mW VDD_SOC 1452mW/1450mW")
    >>> sample.total_mw, sample.total_rail
    (4933.0, 'VDD_IN')
    >>> meter = open_meter("none")
    >>> meter.start(); reading = meter.stop()
    >>> reading.joules is None, reading.reason
    (True, 'energy measurement was turned off')
"""

from __future__ import annotations

import abc
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from ..errors import UsageError

__all__ = ["METERS", "EnergyMeter", "EnergyReading", "RailSample", "energy_per", "open_meter",
           "parse_tegrastats"]


@dataclass(frozen=True)
class EnergyReading:
    """What a meter measured between ``start()`` and ``stop()``.

    ``joules`` is ``None`` when nothing could be measured; ``reason`` then says why. ``seconds``
    is the wall time the reading covers.
    """

    joules: float | None
    source: str
    seconds: float = 0.0
    reason: str = ""

    @property
    def watts(self) -> float | None:
        """Mean power over the reading, or ``None``."""
        if self.joules is None or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"joules": None if self.joules is None else round(self.joules, 6), "source": self.source,
                "seconds": round(self.seconds, 6), "watts": None if self.watts is None else round(self.watts, 4),
                **({"reason": self.reason} if self.reason else {})}


def energy_per(reading: EnergyReading, count: int) -> float | None:
    """Joules per item (image, prompt) of a reading, ``None`` when it has no joules or no items.

    Example:
        >>> energy_per(EnergyReading(3.0, "rapl", 1.5), 4), energy_per(EnergyReading(None, "rapl"), 4)
        (0.75, None)
    """
    if reading.joules is None or count <= 0:
        return None
    return reading.joules / count


class EnergyMeter(abc.ABC):
    """One energy source. ``available()`` says whether it can read here (``""``) or why not.

    Use ``start()`` / ``stop()`` around the work, once or repeatedly, and ``close()`` at the end
    (or use the meter as a context manager).
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def available(self) -> str:
        """``""`` when this meter can measure on this machine, else the reason it cannot."""

    @abc.abstractmethod
    def start(self) -> None:
        """Mark the beginning of the work."""

    @abc.abstractmethod
    def stop(self) -> EnergyReading:
        """The energy since the last ``start()``."""

    def close(self) -> None:
        """Release what the meter holds (a sampling process, a library handle)."""

    def __enter__(self) -> "EnergyMeter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Unavailable(EnergyMeter):
    """A meter that reads nothing and says why (no source here, or measurement turned off)."""

    name = "none"

    def __init__(self, reason: str = "energy measurement was turned off", source: str = "none"):
        self.reason, self.source, self._t0 = reason, source, time.perf_counter()

    def available(self) -> str:
        return self.reason

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        return EnergyReading(None, self.source, time.perf_counter() - self._t0, self.reason)


# --- tegrastats ------------------------------------------------------------------------------------

# "VDD_IN 4933mW/4933mW" (L4T 34+) or "POM_5V_IN 1427/1427" (L4T 32): rail, current, average.
_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
# the rails that measure the module's whole input; the first present is the total
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
# fields of the same "NAME a/b" shape that are not power rails
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM", "LFB", "MTS"})


@dataclass(frozen=True)
class RailSample:
    """One tegrastats line's power rails: ``rails`` maps rail -> (current mW, running average mW)."""

    rails: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def total_rail(self) -> str:
        """The rail that is the total ("VDD_IN", "POM_5V_IN") or "sum" of every rail."""
        return next((r for r in INPUT_RAILS if r in self.rails), "sum")

    @property
    def total_mw(self) -> float:
        rail = self.total_rail
        if rail != "sum":
            return self.rails[rail][0]
        return float(sum(now for now, _ in self.rails.values()))


def parse_tegrastats(line: str) -> RailSample:
    """The power rails of one ``tegrastats`` output line (any L4T from 32 to 36).

    Raises :class:`ValueError` when the line has no power rail (tegrastats without rail access
    prints none), so a meter can say so instead of reporting 0 W.

    Example:
        >>> s = parse_tegrastats("RAM 2448/30536MB SWAP 0/15268MB (cached 0MB) EMC_FREQ 0%@2133 "
        ...     "VDD_GPU_SOC 2792mW/2700mW VDD_CPU_CV 396mW/390mW VIN_SYS_5V0 3224mW/3200mW")
        >>> s.total_rail, s.total_mw, sorted(s.rails)
        ('sum', 6412.0, ['VDD_CPU_CV', 'VDD_GPU_SOC', 'VIN_SYS_5V0'])
    """
    rails = {m[1]: (float(m[2]), float(m[3])) for m in _RAIL.finditer(line) if m[1] not in _NOT_RAILS}
    if not rails:
        raise ValueError(f"no power rail in tegrastats line {line[:80]!r}")
    return RailSample(rails)


def integrate_mw(samples: Iterable[tuple[float, float]], t0: float, t1: float) -> tuple[float, float] | None:
    """(joules, seconds covered) between ``t0`` and ``t1`` from (time s, power mW) samples, each
    power held over the interval that ends at its sample (tegrastats reports the power of the
    interval that ends at its line). ``None`` when no sample covers any of the window.

    Example:
        >>> integrate_mw([(0.0, 1000.0), (1.0, 2000.0), (2.0, 4000.0)], 0.5, 2.0)  # 0.5 s x 2 W + 1 s x 4 W
        (5.0, 1.5)
    """
    pts = sorted(samples)
    joules = covered = 0.0
    for (ta, _), (tb, pb) in zip(pts, pts[1:]):
        lo, hi = max(ta, t0), min(tb, t1)
        if hi > lo:
            joules += pb / 1000.0 * (hi - lo)
            covered += hi - lo
    return (joules, covered) if covered > 0 else None


class TegrastatsMeter(EnergyMeter):
    """Jetson board power from ``tegrastats --interval MS``, integrated between start and stop.

    The process runs from the first ``start()`` to ``close()``; readings shorter than two
    intervals have no joules (say so) -- benchmark long enough, or lower ``interval_ms``.
    """

    name = "tegrastats"

    def __init__(self, interval_ms: int = 100, *, executable: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not 10 <= interval_ms <= 10_000:
            raise UsageError(f"tegrastats interval {interval_ms} ms is outside 10..10000; pick e.g. 100")
        self.interval_ms, self.clock = interval_ms, clock
        self.executable = executable or shutil.which("tegrastats") or (
            "/usr/bin/tegrastats" if Path("/usr/bin/tegrastats").exists() else None)
        self._proc: subprocess.Popen | None = None
        self._samples: list[tuple[float, float]] = []
        self._rail = "sum"
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._problem = ""

    def available(self) -> str:
        return "" if self.executable else "tegrastats is not on this machine (not a Jetson)"

    def feed(self, line: str, at: float | None = None) -> None:
        """Add one tegrastats line received at ``at`` (the clock's now by default)."""
        try:
            sample = parse_tegrastats(line)
        except ValueError:
            self._problem = "tegrastats printed no power rails (run it once by hand to check rail access)"
            return
        with self._lock:
            self._rail = sample.total_rail
            self._samples.append((self.clock() if at is None else at, sample.total_mw))

    def _reader(self, stream: Any) -> None:
        for raw in stream:
            self.feed(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)

    def _launch(self) -> None:
        if self._proc is not None or not self.executable:
            return
        self._proc = subprocess.Popen([self.executable, "--interval", str(self.interval_ms)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._reader, args=(self._proc.stdout,),
                                        name="tegrastats", daemon=True)
        self._thread.start()

    def _wait_for_sample(self, after: float) -> None:
        """Wait (bounded) until a line newer than ``after`` has arrived."""
        deadline = self.clock() + 2.5 * self.interval_ms / 1000.0 + 1.0
        while self._proc is not None and self.clock() < deadline:
            with self._lock:
                if self._samples and self._samples[-1][0] >= after:
                    return
            time.sleep(self.interval_ms / 4000.0)

    def start(self) -> None:
        if self._proc is None and self.executable:
            self._launch()
            self._wait_for_sample(self.clock())  # so that the window's start is covered
        self._t0 = self.clock()

    def stop(self) -> EnergyReading:
        t1 = self.clock()
        t0 = t1 if self._t0 is None else self._t0
        source = f"tegrastats:{self._rail}"
        if not self.executable:
            return EnergyReading(None, source, t1 - t0, self.available())
        self._wait_for_sample(t1)  # the line that covers the window's end arrives up to one interval later
        with self._lock:
            got = integrate_mw(self._samples, t0, t1)
            source = f"tegrastats:{self._rail}"
        if got is None:
            why = self._problem or (f"the run ({t1 - t0:.3f} s) was shorter than tegrastats' sampling "
                                    f"({self.interval_ms} ms); run longer")
            return EnergyReading(None, source, t1 - t0, why)
        joules, covered = got
        if covered < t1 - t0:  # late lines (a loaded machine): the uncovered part at the mean power
            return EnergyReading(joules * (t1 - t0) / covered, source, t1 - t0,
                                 f"extrapolated: tegrastats lines covered {100 * covered / (t1 - t0):.0f}% of the run")
        return EnergyReading(joules, source, t1 - t0)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


# --- RAPL -----------------------------------------------------------------------------------------

POWERCAP = Path("/sys/class/powercap")


class RaplMeter(EnergyMeter):
    """x86 package energy from the powercap RAPL counters (microjoules, wrapping at
    ``max_energy_range_uj``), summed over the packages."""

    name = "rapl"

    def __init__(self, root: Path | str = POWERCAP):
        self.root = Path(root)
        self._zones = self._find()
        self._start: dict[Path, int] = {}
        self._t0 = time.perf_counter()

    def _find(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        zones = []
        for zone in sorted(self.root.glob("*-rapl:*")):
            name = zone / "name"
            # top-level zones only ("intel-rapl:0", not the "intel-rapl:0:0" core sub-zone)
            if zone.name.count(":") == 1 and name.is_file() and name.read_text().strip().startswith("package"):
                zones.append(zone)
        return zones

    def available(self) -> str:
        if not self._zones:
            return f"no RAPL package zone under {self.root} (not x86, or the powercap driver is not loaded)"
        try:
            self._read(self._zones[0], "energy_uj")
        except PermissionError:
            return (f"{self._zones[0] / 'energy_uj'} is readable by root only (the kernel's default since "
                    "2020); run as root or make it readable to measure energy")
        except (OSError, ValueError) as e:
            return f"cannot read {self._zones[0] / 'energy_uj'}: {e}"
        return ""

    @staticmethod
    def _read(zone: Path, name: str) -> int:
        return int((zone / name).read_text().strip())

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {}
        if self.available():
            return
        self._start = {z: self._read(z, "energy_uj") for z in self._zones}

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        names = "+".join((z / "name").read_text().strip() for z in self._zones) if self._zones else ""
        source = f"rapl:{names}" if names else "rapl"
        why = self.available()
        if why or not self._start:
            return EnergyReading(None, source, seconds, why or "stop() without start()")
        total = 0
        for zone, before in self._start.items():
            now = self._read(zone, "energy_uj")
            if now < before:  # the counter wrapped
                now += self._read(zone, "max_energy_range_uj")
            total += now - before
        return EnergyReading(total / 1e6, source, seconds)


# --- NVML -----------------------------------------------------------------------------------------

class NvmlMeter(EnergyMeter):
    """NVIDIA GPU energy from NVML's total-energy counter (millijoules; Volta and newer)."""

    name = "nvml"

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._problem = ""
        self._start: list[int] = []
        self._t0 = time.perf_counter()
        try:
            import pynvml
        except ImportError:
            self._problem = "nvidia-ml-py (pynvml) is not installed (pip install nvidia-ml-py to measure GPU energy)"
            return
        try:
            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            for h in self._handles:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        except Exception as e:  # noqa: BLE001 - no driver / no GPU / a GPU without the counter
            self._problem = f"NVML cannot read GPU energy here ({type(e).__name__}: {e})"
            self._handles = []
            return
        self._nvml = pynvml
        if not self._handles:
            self._problem = "NVML found no GPU"

    def available(self) -> str:
        return self._problem

    def _read(self) -> list[int]:
        return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles]

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._read() if not self._problem else []

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        source = f"nvml:{len(self._handles)} GPU" + ("s" if len(self._handles) != 1 else "")
        if self._problem or not self._start:
            return EnergyReading(None, source, seconds, self._problem or "stop() without start()")
        used = sum(b - a for a, b in zip(self._start, self._read()))
        return EnergyReading(used / 1000.0, source, seconds)

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down twice or after a driver reset
                pass
            self._nvml = None


METERS: dict[str, Callable[[], EnergyMeter]] = {
    "tegrastats": TegrastatsMeter,
    "rapl": RaplMeter,
    "nvml": NvmlMeter,
}
# "auto": the first available in this order for a CPU run; a GPU run asks for "nvml" itself
AUTO_ORDER = ("tegrastats", "rapl", "nvml")


def open_meter(kind: str = "auto") -> EnergyMeter:
    """The meter ``kind`` ("auto", "none" or a name in :data:`METERS`).

    ``auto`` picks the first available meter of :data:`AUTO_ORDER`; when none is, the result reads
    ``None`` with every source's reason. A named meter that cannot read here also reads ``None``
    with its reason (the benchmark continues, the column says n/a).

    Example:
        >>> open_meter("joulemeter")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: unknown energy source 'joulemeter'; choose one of auto, none, nvml, rapl, tegrastats
    """
    if kind == "none":
        return _Unavailable()
    if kind not in METERS and kind != "auto":
        raise UsageError(f"unknown energy source {kind!r}; choose one of "
                         + ", ".join(sorted([*METERS, "auto", "none"])))
    reasons = []
    for name in (AUTO_ORDER if kind == "auto" else (kind,)):
        meter = METERS[name]()
        why = meter.available()
        if not why:
            return meter
        meter.close()
        reasons.append(f"{name}: {why}")
    return _Unavailable("; ".join(reasons), source=kind)
