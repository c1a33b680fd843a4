"""Energy meters: tegrastats lines as Orin Nano / AGX Orin / Nano print them, RAPL counters in a
fake powercap tree, NVML through a fake module, and "n/a with a reason, never 0"."""

from __future__ import annotations

import sys
import textwrap
import time
import types

import pytest

from slimsam_edge.devices import energy
from slimsam_edge.devices.energy import (EnergyReading, RaplMeter, TegrastatsMeter, energy_per, integrate_mw,
                                         open_meter, parse_tegrastats)
from slimsam_edge.errors import UsageError

# one line each in the format of the board's tegrastats (L4T 35/36 Orin, L4T 32 Nano and Xavier)
ORIN_NANO = ("12-02-2026 07:41:12 RAM 2051/7620MB (lfb 1052x4MB) SWAP 0/3810MB (cached 0MB) "
             "CPU [2%@1510,1%@1510,0%@1510,0%@1510,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[624] "
             "VIC_FREQ 115 APE 200 CPU@48.656C soc2@47.562C soc0@47.25C gpu@48.125C tj@48.656C "
             "soc1@46.937C VDD_IN 4933mW/4933mW VDD_CPU_GPU_CV 645mW/645mW VDD_SOC 1452mW/1452mW")
AGX_ORIN = ("RAM 2448/30536MB (lfb 6399x4MB) SWAP 0/15268MB (cached 0MB) CPU [1%@729,0%@729,0%@729,"
            "0%@729,off,off,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] VIC_FREQ 729 APE 174 "
            "CV0@-256C CPU@43.5C Tboard@32C SOC2@40.156C Tdiode@33.5C SOC0@40.875C tj@43.5C "
            "VDD_GPU_SOC 2792mW/2792mW VDD_CPU_CV 396mW/396mW VIN_SYS_5V0 3224mW/3224mW "
            "VDDQ_VDD2_1V8AO 503mW/503mW")
NANO = ("RAM 1745/3964MB (lfb 88x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [5%@1479,3%@1479,3%@1479,7%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 APE 25 "
        "PLL@39C CPU@42.5C PMIC@100C GPU@40.5C AO@48C thermal@41.25C POM_5V_IN 1427/1390 "
        "POM_5V_GPU 0/0 POM_5V_CPU 163/160")


def test_orin_nano_uses_the_input_rail():
    s = parse_tegrastats(ORIN_NANO)
    assert s.total_rail == "VDD_IN" and s.total_mw == 4933.0
    assert s.rails == {"VDD_IN": (4933.0, 4933.0), "VDD_CPU_GPU_CV": (645.0, 645.0), "VDD_SOC": (1452.0, 1452.0)}


def test_agx_orin_sums_its_rails_and_ignores_memory_fields():
    s = parse_tegrastats(AGX_ORIN)
    assert s.total_rail == "sum"
    assert s.total_mw == 2792 + 396 + 3224 + 503
    assert "RAM" not in s.rails and "SWAP" not in s.rails


def test_nano_l4t32_rails_without_units():
    s = parse_tegrastats(NANO)
    assert s.total_rail == "POM_5V_IN" and s.total_mw == 1427.0
    assert s.rails["POM_5V_CPU"] == (163.0, 160.0) and "IRAM" not in s.rails


def test_a_line_without_rails_is_refused_not_zero():
    with pytest.raises(ValueError, match="no power rail"):
        parse_tegrastats("RAM 2051/7620MB (lfb 1052x4MB) SWAP 0/3810MB CPU [2%@1510]")


def test_integration_holds_each_power_over_its_interval():
    pts = [(0.0, 1000.0), (1.0, 1000.0), (2.0, 3000.0), (3.0, 3000.0)]
    assert integrate_mw(pts, 0.0, 3.0) == pytest.approx((1.0 + 3.0 + 3.0, 3.0))
    assert integrate_mw(pts, 1.5, 2.5) == pytest.approx((0.5 * 3.0 + 0.5 * 3.0, 1.0))
    assert integrate_mw(pts, 2.5, 4.0) == pytest.approx((0.5 * 3.0, 0.5))  # the tail is not covered
    assert integrate_mw(pts, 5.0, 6.0) is None and integrate_mw([(0.0, 5.0)], 0.0, 1.0) is None


def test_tegrastats_meter_integrates_fed_lines_on_its_clock():
    now = [0.0]
    meter = TegrastatsMeter(100, executable="/nonexistent/tegrastats", clock=lambda: now[0])
    meter._proc = None  # lines are fed by hand: no process
    meter.executable = "fed"
    meter._launch = lambda: None
    meter.feed(ORIN_NANO, at=0.0)
    meter.start()
    for t in (0.1, 0.2, 0.3, 0.4):
        meter.feed(ORIN_NANO, at=t)
    now[0] = 0.4
    reading = meter.stop()
    assert reading.source == "tegrastats:VDD_IN"
    assert reading.joules == pytest.approx(4.933 * 0.4)
    assert reading.watts == pytest.approx(4.933)


def test_tegrastats_meter_runs_the_tool_without_a_shell(tmp_path):
    fake = tmp_path / "tegrastats"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, time
        ms = int(sys.argv[sys.argv.index("--interval") + 1])
        while True:
            print("RAM 1/2MB VDD_IN 5000mW/5000mW VDD_SOC 1000mW/1000mW", flush=True)
            time.sleep(ms / 1000)
        """))
    fake.chmod(0o755)
    with TegrastatsMeter(20, executable=str(fake)) as meter:
        assert meter.available() == ""
        meter.start()
        deadline = time.monotonic() + 60  # bounds the test only; the assertion is not on time
        while time.monotonic() < deadline and len(meter._samples) < 4:
            time.sleep(0.02)
        reading = meter.stop()
        assert meter._proc is not None and meter._proc.args[0] == str(fake)
    assert meter._proc is None
    assert reading.joules is not None and reading.joules > 0
    assert reading.watts == pytest.approx(5.0, rel=0.35)


def test_tegrastats_missing_reads_none_with_the_reason(monkeypatch):
    monkeypatch.setattr(energy.shutil, "which", lambda name: None)
    monkeypatch.setattr(energy, "Path", lambda p: type("P", (), {"exists": lambda self: False})())
    meter = TegrastatsMeter()
    assert "not a Jetson" in meter.available()
    meter.start()
    r = meter.stop()
    assert r.joules is None and "not a Jetson" in r.reason


def _zone(root, name, label, uj, max_uj=2**32):
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def test_rapl_sums_packages_and_handles_wraparound(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)  # a sub-zone: inside package-0 already
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 2**32 - 500_000)
    _zone(tmp_path, "intel-rapl-mmio:0", "dram", 7)  # not a package
    meter = RaplMeter(tmp_path)
    assert meter.available() == ""
    meter.start()
    (p0 / "energy_uj").write_text("3500000\n")       # +2.5 J
    (p1 / "energy_uj").write_text("1500000\n")       # wrapped: +0.5 J + 1.5 J
    r = meter.stop()
    assert r.joules == pytest.approx(2.5 + 2.0)
    assert r.source == "rapl:package-0+package-1"


def test_rapl_root_only_counters_say_so(tmp_path, monkeypatch):
    _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    meter = RaplMeter(tmp_path)

    def denied(zone, name):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(RaplMeter, "_read", staticmethod(denied))
    assert "root only" in meter.available()
    meter.start()
    r = meter.stop()
    assert r.joules is None and "root only" in r.reason and r.to_dict()["joules"] is None


def test_rapl_absent(tmp_path):
    r = RaplMeter(tmp_path / "nowhere")
    assert "no RAPL package zone" in r.available()


def _fake_pynvml(monkeypatch, counters, supported=True):
    mod = types.ModuleType("pynvml")
    state = {"init": 0}
    mod.nvmlInit = lambda: state.__setitem__("init", state["init"] + 1)
    mod.nvmlShutdown = lambda: state.__setitem__("init", state["init"] - 1)
    mod.nvmlDeviceGetCount = lambda: len(counters)
    mod.nvmlDeviceGetHandleByIndex = lambda i: i

    def total(h):
        if not supported:
            raise RuntimeError("Not Supported")
        return counters[h]

    mod.nvmlDeviceGetTotalEnergyConsumption = total
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    return state


def test_nvml_energy_counter_in_millijoules(monkeypatch):
    counters = [10_000, 50_000]
    state = _fake_pynvml(monkeypatch, counters)
    with open_meter("nvml") as meter:
        meter.start()
        counters[0] += 1500
        counters[1] += 2500
        r = meter.stop()
    assert r.joules == pytest.approx(4.0) and r.source == "nvml:2 GPUs"
    assert state["init"] == 0


def test_nvml_without_the_counter_is_na(monkeypatch):
    _fake_pynvml(monkeypatch, [0], supported=False)
    meter = open_meter("nvml")
    meter.start()
    r = meter.stop()
    assert r.joules is None and "Not Supported" in r.reason


def test_auto_without_any_source_lists_every_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(energy.shutil, "which", lambda name: None)
    monkeypatch.setitem(energy.METERS, "tegrastats", lambda: TegrastatsMeter(executable=None))
    monkeypatch.setitem(energy.METERS, "rapl", lambda: RaplMeter(tmp_path / "none"))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    meter = open_meter("auto")
    meter.start()
    r = meter.stop()
    assert r.joules is None
    assert [part.split(":")[0] for part in r.reason.split("; ")] == ["tegrastats", "rapl", "nvml"]


def test_unknown_source_and_per_item():
    with pytest.raises(UsageError, match="choose one of auto, none, nvml, rapl, tegrastats"):
        open_meter("watts")
    assert energy_per(EnergyReading(2.0, "x", 1.0), 0) is None
    assert energy_per(EnergyReading(2.0, "x", 1.0), 4) == 0.5
