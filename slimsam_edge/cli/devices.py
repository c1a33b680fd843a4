"""``slimsam-edge devices [--target T] [--detect] [--json]``: the target profiles, and this machine."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .common import emit_json, handle_errors
from .options import JsonOpt


@handle_errors
def devices(
    detect_machine: Annotated[bool, typer.Option("--detect", help="Describe this machine: CPU and its flags, memory, Jetson / JetPack, NVIDIA GPU, OpenVINO devices, installed runtimes, the profile that fits and the precisions it can run.")] = False,
    target: Annotated[Optional[str], typer.Option("--target", help="Only this profile: a shipped name or the path of a .toml profile (with --detect: judge the machine against it).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the target profiles (devices/profiles/*.toml) or, with --detect, describe this machine."""
    from ..devices import list_profiles, load_profile

    profiles = [load_profile(target)] if target else [load_profile(n) for n in list_profiles()]
    if detect_machine:
        report = describe_machine(target)
        emit_json(report) if json_out else _print_machine(report)
        return
    rows = [profile_row(p, detail=bool(target)) for p in profiles]
    emit_json(rows) if json_out else _print_profiles(rows)


def profile_row(p: Any, detail: bool = False) -> dict[str, Any]:
    """One profile as plain values (``--json``); ``detail`` adds notes, graphs and the tables."""
    row: dict[str, Any] = {
        "name": p.name, "kind": p.kind, "backends": list(p.backends),
        "precisions": {b: list(ps) for b, ps in p.precisions.items()}, "dla_cores": p.dla_cores,
        "description": p.description, "source": p.source,
    }
    if detail:
        row.update(graphs={b: list(g) for b, g in p.graphs.items()}, default_backend=p.default_backend,
                   default_precision=p.default_precision, notes=list(p.notes),
                   tensorrt=p.tensorrt.to_dict() if p.tensorrt else None, runtime=p.runtime.to_dict())
    return row


def describe_machine(target: str | None = None) -> dict[str, Any]:
    """detect() with runtime versions + each runtime's devices, the fitting profile (or ``target``)
    and the precisions of that profile this machine can and cannot run."""
    from ..devices import default_profile, detect, load_profile, machine_precisions, why_not
    from ..runtimes import runtime_devices, runtime_distributions

    info = detect(runtime_distributions())
    info["runtime_devices"] = runtime_devices()
    fits = default_profile(info)
    profile = load_profile(target or fits)
    can = machine_precisions(profile, info)
    return {
        "machine": info, "profile_that_fits": fits, "profile": profile.name,
        "precisions": list(can),
        "refused": {p: why_not(p, info) for p in profile.all_precisions() if p not in can},
    }


def _print_profiles(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..devices import PRECISIONS

    t = Table("name", "kind", "backends", "precisions", "DLA", "description")
    t.columns[0].no_wrap = True
    for r in rows:
        have = {p for ps in r["precisions"].values() for p in ps}
        precisions = ", ".join(p for p in PRECISIONS if p in have)
        t.add_row(r["name"], r["kind"], ", ".join(r["backends"]), precisions, str(r["dla_cores"]), r["description"])
    c = Console()
    c.print(t)
    if len(rows) == 1 and "notes" in rows[0]:
        r = rows[0]
        c.print(f"source: {r['source']}; default {r['default_backend']} / {r['default_precision']}; "
                f"runtime {r['runtime']}")
        c.print("graphs: " + "; ".join(f"{b}: {', '.join(g)}" for b, g in r["graphs"].items()))
        if r["tensorrt"]:
            c.print(f"tensorrt: {r['tensorrt']}")
        for note in r["notes"]:
            c.print(f"- {note}")


def _print_machine(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report["machine"]
    t = Table("", "", show_header=False)
    t.add_row("CPU", f"{m['cpu_model']} ({m['machine']}), {m['cores_physical']} cores / {m['cores_logical']} threads")
    t.add_row("CPU features", ", ".join(m["cpu_features"]) or "none of " + ", ".join(m["cpu_flags"]))
    t.add_row("bf16 / fast int8", f"{'yes' if m['supports_bf16'] else 'no'} / {'yes' if m['fast_int8'] else 'no'}")
    t.add_row("memory", f"{m['memory_total_gb']} GB")
    t.add_row("OS / Python", f"{m['os']} / {m['python']}")
    if m["is_jetson"]:
        t.add_row("Jetson", f"{m['jetson_model']}: {m['l4t'] or '?'} ({m['jetpack'] or 'JetPack ?'}); {m['jetson_release']}")
    else:
        t.add_row("Jetson", "no")
    gpus = m["nvidia_gpus"]
    if gpus:
        for g in gpus:
            t.add_row(f"NVIDIA GPU {g['index']}", f"{g['name']}, {g['memory_gb']} GB, compute {g['compute_capability']}, "
                      f"driver {g['driver']}")
    else:
        t.add_row("NVIDIA GPU", ("driver loaded, " if m["nvidia_driver"] else "no driver loaded, ")
                  + ("none found by NVML" if gpus == [] else "NVML not available (pip install nvidia-ml-py)"))
    for backend, devs in m["runtime_devices"].items():
        for d in devs:
            t.add_row(f"{backend} device", d.get("error") or f"{d['device']}: {d['name']} ({', '.join(d['capabilities'])})")
    t.add_row("runtimes", ", ".join(f"{r} {v or '(not installed)'}" for r, v in m["runtimes"].items()))
    t.add_row("profile that fits", report["profile_that_fits"])
    t.add_row(f"precisions ({report['profile']})", ", ".join(report["precisions"]))
    for p, why in report["refused"].items():
        t.add_row(f"refused {p}", why)
    Console().print(t)
