"""Crashes at any moment (issue 20, item 5): SIGKILL ``export``, ``compress``, ``segment`` and
``bench --out`` at random points and check that nothing is left half-written.

Each command runs as a subprocess (an argument list, never a shell; ``python -m slimsam_edge``) on
the shipped sam-mini and built-in data with small settings. One uninterrupted run measures the
command's duration (and, for ``compress``, gives the reference weights); then the command is run
again ``kills`` times and SIGKILLed after a delay drawn uniformly over that duration (seeded,
recorded), plus once at each *cued* point: the moment an output's atomic write is complete but not
yet renamed into place (``SLIMSAM_EDGE_KILL_AT``, :data:`slimsam_edge.fsutil.KILL_AT_ENV`). After
every kill each output must be absent or complete and valid (a bundle passes ``slimsam-edge
verify``; PNGs decode and end in IEND; JSON parses; safetensors and checkpoints load); the next
run of the command must leave no temporary behind; no process of the killed command may live on.
For ``compress`` the next run is ``--resume`` (a fresh start when no checkpoint was written yet)
and must finish with weights bit-identical to the uninterrupted run's.

Half of the kills of ``export``, ``segment`` and ``bench`` land on a fresh output path, half on
a complete output of an earlier run (which must then survive whole, old or new).

Example:
    $ python scripts/kill_points.py --kills 5 --seed 0 --json docs/results/kill_points.json

Illustration (not run as a doctest: it runs the CLI for minutes)::

    report = run_kill_points(Path("/tmp/kp"), kills=5, seed=0)
    print(render_table(report))
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

#: tiny compression job on the shipped sam-mini teacher (well under a minute on 2 cores)
COMPRESS_ARGS = ["--ratio", "0.5", "--steps", "4", "--images", "8", "--importance-images", "2",
                 "--eval-images", "2", "--val-images", "2", "--val-every", "2", "--checkpoint-every", "1",
                 "--batch", "1", "--threads", "1", "--device", "cpu", "--seed", "0"]
PNG_END = b"IEND\xaeB`\x82"


def cli(*args: str) -> list[str]:
    """The argument list that runs ``slimsam-edge <args>`` with this interpreter.

    Example:
        >>> cli("segment", "--help")[1:]
        ['-m', 'slimsam_edge', 'segment', '--help']
    """
    return [sys.executable, "-m", "slimsam_edge", *args]


@dataclass
class Command:
    """One command under test: how to run it on ``out`` and what its outputs must look like.

    ``argv(out)``: the command line writing under ``out``; ``outputs(out)``: the paths it writes;
    ``check(path)``: None when ``path`` is complete and valid, else what is wrong; ``cues``: output
    names to kill at (``SLIMSAM_EDGE_KILL_AT`` values).
    """

    name: str
    argv: Callable[[Path], list[str]]
    outputs: Callable[[Path], list[Path]]
    check: Callable[[Path], str | None]
    cues: list[str]
    resumable: bool = False


# --- output checks (None: complete and valid) ------------------------------------------------------

def check_png(path: Path) -> str | None:
    """A whole PNG: ends with the IEND chunk and decodes."""
    import cv2
    import numpy as np

    data = path.read_bytes()
    if not data.endswith(PNG_END):
        return "no IEND chunk (truncated)"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is not None and img.size else "does not decode"


def check_json(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return f"not JSON ({err})"
    return None


def check_jsonl(path: Path) -> str | None:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            return f"line {i} is not JSON"
    return None


def check_bundle(path: Path) -> str | None:
    """``slimsam-edge verify`` passes (hashes, then reference I/O through ONNX Runtime)."""
    res = subprocess.run(cli("verify", str(path), "--backend", "onnxruntime", "--threads", "1"),
                         capture_output=True, text=True)
    return None if res.returncode == 0 else f"verify exit {res.returncode}: {res.stderr.strip()[-200:]}"


def check_compress_file(path: Path) -> str | None:
    """checkpoint.pt loads (weights only); safetensors load as models; JSON / JSONL parse."""
    try:
        if path.name == "checkpoint.pt":
            from ..compress.distill import load_checkpoint

            state = load_checkpoint(path)
            return None if {"model", "optimizer", "step", "phase"} <= set(state) else "checkpoint lacks keys"
        if path.suffix == ".safetensors":
            from ..models.io import load_model

            load_model(path)
            return None
    except Exception as err:  # noqa: BLE001 - any failure to load is the finding
        return f"{type(err).__name__}: {str(err)[:200]}"
    if path.suffix == ".json":
        return check_json(path)
    if path.suffix == ".jsonl":
        return check_jsonl(path)
    return None if path.stat().st_size else "empty"


def temporaries(folder: Path) -> list[str]:
    """Names of temporaries (``.<name>.*.tmp*`` / ``.<name>.old``) directly in ``folder``.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / ".a.png.x1.tmp.png").write_bytes(b""); _ = (d / "a.png").write_bytes(b"")
        >>> temporaries(d)
        ['.a.png.x1.tmp.png']
    """
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and (".tmp" in p.name or p.name.endswith(".old")))


# --- the commands -------------------------------------------------------------------------------

def commands(work: Path) -> dict[str, Command]:
    """The four commands, over inputs prepared in ``work`` by :func:`prepare`."""
    bundle, image = work / "inputs" / "bundle", work / "inputs" / "image.png"
    compress_outputs = ["checkpoint.pt", "step1.safetensors", "model.safetensors", "report.json", "report.md",
                        "log.jsonl"]
    return {
        "export": Command(
            "export", lambda o: cli("export", "--target", "cpu", "--no-validate", "--out", str(o / "bundle")),
            lambda o: [o / "bundle"], check_bundle, ["bundle", "manifest.json", "model.safetensors"]),
        "compress": Command(
            "compress", lambda o: cli("compress", *COMPRESS_ARGS, "--out", str(o / "run")),
            lambda o: [o / "run" / n for n in compress_outputs], check_compress_file,
            ["checkpoint.pt:3", "step1.safetensors", "checkpoint.pt:6", "model.safetensors", "report.json"],
            resumable=True),
        "segment": Command(
            "segment", lambda o: cli("segment", str(image), "--bundle", str(bundle), "--out", str(o / "mask.png"),
                                     "--point", "320,240", "--backend", "onnxruntime", "--threads", "1"),
            lambda o: [o / "mask.png", o / "mask_overlay.png"], check_png, ["mask.png", "mask_overlay.png"]),
        "bench": Command(
            "bench", lambda o: cli("bench", str(bundle), "--out", str(o / "bench.json"), "--backend", "onnxruntime",
                                   "--runs", "3", "--warmup", "1", "--prompts", "5", "--image-size", "480x640",
                                   "--threads", "1", "--repeats", "1", "--no-peak", "--no-accuracy",
                                   "--energy", "none", "--json"),
            lambda o: [o / "bench.json"], check_json, ["bench.json"]),
    }


def prepare(work: Path) -> None:
    """The inputs of ``segment`` and ``bench``: a sam-mini bundle (ONNX Runtime) and a procedural image."""
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    if not (inputs / "image.png").exists():
        import cv2

        from ..data.procedural import generate_sample

        img, _ = generate_sample(7, (480, 640))
        cv2.imwrite(str(inputs / "image.png"), img[..., ::-1])
    if not (inputs / "bundle" / "manifest.json").exists():
        subprocess.run(cli("export", "--target", "onnx", "--no-validate", "--out", str(inputs / "bundle")),
                       check=True, capture_output=True)


# --- running and killing ----------------------------------------------------------------------------

def _session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (each command runs in a new session of its own)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    pids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


@dataclass
class Run:
    """One run of a command: killed after ``delay`` s / at ``cue``, or left to finish (both None)."""

    delay: float | None = None
    cue: str | None = None
    killed: bool = False
    rc: int | None = None
    seconds: float = 0.0
    orphans: int = 0
    stderr_tail: str = ""


def run_once(argv: list[str], logs: Path, *, delay: float | None = None, cue: str | None = None,
             env: dict[str, str] | None = None) -> Run:
    """Run ``argv``; SIGKILL it after ``delay`` seconds if still running (``cue``: set the kill cue);
    then SIGKILL whatever of its session lives on (counted as ``orphans``)."""
    from ..fsutil import KILL_AT_ENV

    env = dict(env or os.environ)
    env.pop(KILL_AT_ENV, None)
    if cue:
        env[KILL_AT_ENV] = cue
    logs.parent.mkdir(parents=True, exist_ok=True)
    run = Run(delay=delay, cue=cue)
    t0 = time.perf_counter()
    with open(logs, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            run.killed = True
    run.seconds = time.perf_counter() - t0
    run.rc = proc.returncode
    run.killed = run.killed or run.rc == -signal.SIGKILL
    time.sleep(0.2)  # let the kernel reparent any child
    left = _session_pids(proc.pid)
    run.orphans = len(left)
    for pid in left:  # our own command's children only (same new session)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    run.stderr_tail = logs.read_text(errors="replace")[-300:]
    return run


def check_outputs(cmd: Command, out: Path) -> list[str]:
    """What is wrong with the outputs under ``out`` (present ones must be complete and valid)."""
    problems = []
    for path in cmd.outputs(out):
        if path.exists():
            why = cmd.check(path)
            if why:
                problems.append(f"{path.name}: {why}")
    return problems


def _leftovers(cmd: Command, out: Path) -> list[str]:
    return sorted({t for p in cmd.outputs(out) for t in temporaries(p.parent)})


def _weights_equal(a: Path, b: Path) -> bool:
    from safetensors.numpy import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes() for k in x)


@dataclass
class CommandReport:
    name: str
    duration_s: float = 0.0
    kills: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return summarize(self.name, self.duration_s, self.kills)


def summarize(name: str, duration_s: float, kills: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from a command's kill records.

    Example:
        >>> k = {"killed": True, "cue": None, "problems": [], "next_run_clean": True, "orphans": 0,
        ...      "next_run": "resume", "bit_identical": True}
        >>> summarize("compress", 40.0, [k, {**k, "next_run": "fresh"}])["resumed_bit_identical"]
        '1/1 (+1 fresh)'
    """
    killed = [k for k in kills if k["killed"]]
    resumed = [k for k in killed if k.get("bit_identical") is not None and k["next_run"] == "resume"]
    fresh = [k for k in killed if k.get("bit_identical") is not None and k["next_run"] == "fresh"]
    bits = "-"
    if resumed or fresh:
        bits = f"{sum(k['bit_identical'] for k in resumed)}/{len(resumed)}"
        if fresh:
            bits += f" (+{sum(k['bit_identical'] for k in fresh)} fresh)" if all(k["bit_identical"] for k in fresh) \
                else f" (fresh: {sum(k['bit_identical'] for k in fresh)}/{len(fresh)})"
    return {"command": name, "duration_s": round(duration_s, 2), "kills": len(killed),
            "random": sum(k["cue"] is None for k in killed), "cued": sum(k["cue"] is not None for k in killed),
            "survived": sum(not k["problems"] for k in killed),
            "next_run_clean": sum(k["next_run_clean"] for k in killed),
            "orphans": sum(k["orphans"] for k in killed),
            "resumed_bit_identical": bits}


def passed(row: dict[str, Any]) -> bool:
    """Every kill survived, every next run clean, no orphan, every resume bit-identical.

    Example:
        >>> passed({"kills": 2, "survived": 2, "next_run_clean": 2, "orphans": 0, "resumed_bit_identical": "1/2"})
        False
    """
    bits = row["resumed_bit_identical"]
    done, _, total = bits.split(" ")[0].partition("/")
    return (row["survived"] == row["next_run_clean"] == row["kills"] and not row["orphans"]
            and "fresh:" not in bits and done == (total or done))


def merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs (e.g. one per command), rows recomputed from the kill records."""
    out = {**reports[0], "commands": {}, "rows": [], "parts": [r.get("argv") for r in reports],
           "wall_s": round(sum(r.get("wall_s", 0) for r in reports), 1)}
    for r in reports:
        for row in r["rows"]:
            out["commands"][row["command"]] = r["commands"][row["command"]]
            out["rows"].append(summarize(row["command"], row["duration_s"], r["commands"][row["command"]]))
    return out


def kill_command(cmd: Command, work: Path, *, kills: int, rng: random.Random,
                 progress: Callable[[str], None] = lambda s: None) -> CommandReport:
    """The uninterrupted reference run, ``kills`` random kills and one kill per cue of ``cmd``."""
    base = work / cmd.name
    shutil.rmtree(base, ignore_errors=True)
    ref_out = base / "reference"
    ref = run_once(cmd.argv(ref_out), base / "logs" / "reference.err")
    if ref.rc != 0:
        raise RuntimeError(f"{cmd.name}: the uninterrupted run failed (exit {ref.rc}): {ref.stderr_tail}")
    report = CommandReport(cmd.name, ref.seconds)
    bad = check_outputs(cmd, ref_out)
    if bad:
        raise RuntimeError(f"{cmd.name}: the uninterrupted run wrote bad outputs: {bad}")
    # random delays over the measured duration until ``kills`` runs were killed (a run may finish
    # first on a loaded machine: recorded, not counted), then one kill at each cue
    plan: list[tuple[float | None, str | None]] = [(None, cue) for cue in cmd.cues]
    i = 0
    while sum(k["killed"] and k["cue"] is None for k in report.kills) < kills and i < 3 * kills:
        report.kills.append(_kill_once(cmd, base, i, round(rng.uniform(0.0, ref.seconds), 3), None, ref_out, progress))
        i += 1
    for delay, cue in plan:
        report.kills.append(_kill_once(cmd, base, i, delay, cue, ref_out, progress))
        i += 1
    return report


def _kill_once(cmd: Command, base: Path, i: int, delay: float | None, cue: str | None, ref_out: Path,
               progress: Callable[[str], None]) -> dict[str, Any]:
    """Kill run ``i`` of ``cmd`` (after ``delay`` s or at ``cue``), check its outputs, run it again."""
    out = base / f"kill{i:02d}"
    over_existing = not cmd.resumable and i % 2 == 1
    if over_existing:  # a complete output of an earlier run is being replaced
        shutil.copytree(ref_out, out)
    progress(f"{cmd.name} kill {i + 1} " + (f"after {delay:.2f}s" if cue is None else f"at {cue}"))
    run = run_once(cmd.argv(out), base / "logs" / f"kill{i:02d}.err", delay=delay, cue=cue)
    entry: dict[str, Any] = {"delay_s": delay, "cue": cue, "killed": run.killed, "rc": run.rc,
                             "over_existing": over_existing, "orphans": run.orphans,
                             "problems": check_outputs(cmd, out), "temporaries": _leftovers(cmd, out),
                             "present": [p.name for p in cmd.outputs(out) if p.exists()]}
    if over_existing and not all(p.exists() for p in cmd.outputs(out)):
        entry["problems"].append("the earlier complete output is gone")
    # the next run: finishes (compress: resumes), then no temporary may be left
    again = cmd.argv(out)
    if cmd.resumable and (cmd.outputs(out)[0]).exists():
        again = again + ["--resume"]
    entry["next_run"] = "resume" if "--resume" in again else "fresh"
    nxt = run_once(again, base / "logs" / f"next{i:02d}.err")
    entry["next_rc"] = nxt.rc
    entry["next_run_clean"] = nxt.rc == 0 and not check_outputs(cmd, out) and not _leftovers(cmd, out)
    if cmd.resumable:
        entry["bit_identical"] = nxt.rc == 0 and _weights_equal(ref_out / "run" / "model.safetensors",
                                                                out / "run" / "model.safetensors")
    shutil.rmtree(out, ignore_errors=True)  # keep the disk small; the record says it all
    return entry


def machine() -> dict[str, Any]:
    import platform

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


def run_kill_points(work: Path, *, kills: int = 5, seed: int = 0, only: Sequence[str] | None = None,
                    progress: Callable[[str], None] = lambda s: None,
                    on_command: Callable[[dict[str, Any]], None] = lambda report: None) -> dict[str, Any]:
    """Run every command's kill points in ``work``; the report (``rows``, ``commands``, ``machine``),
    also passed to ``on_command`` after each command (a long run keeps what it has measured)."""
    work.mkdir(parents=True, exist_ok=True)
    progress("preparing the inputs (sam-mini bundle, image)")
    prepare(work)
    reports: list[CommandReport] = []

    def report() -> dict[str, Any]:
        return {"seed": seed, "kills_per_command": kills, "machine": machine(),
                "rows": [r.summary() for r in reports], "commands": {r.name: r.kills for r in reports}}

    for name, cmd in commands(work).items():
        if only and name not in only:
            continue
        rng = random.Random(f"{seed}:{name}")  # each command's delays do not depend on which others ran
        reports.append(kill_command(cmd, work, kills=kills, rng=rng, progress=progress))
        on_command(report())
    return report()


def render_table(report: dict[str, Any]) -> str:
    """The summary as a markdown table.

    Example:
        >>> row = {"command": "segment", "duration_s": 1.0, "kills": 7, "random": 5, "cued": 2, "survived": 7,
        ...        "next_run_clean": 7, "orphans": 0, "resumed_bit_identical": "-"}
        >>> print(render_table({"rows": [row]}).splitlines()[2])
        | segment | 1.0 | 7 (5 random + 2 cued) | 7 | 7 | 0 | - |
    """
    lines = ["| command | run (s) | kills | survived | next run clean | orphans | resumed bit-identical |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['command']} | {r['duration_s']} | {r['kills']} ({r['random']} random + {r['cued']} cued) "
                     f"| {r['survived']} | {r['next_run_clean']} | {r['orphans']} | {r['resumed_bit_identical']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="SIGKILL export / compress / segment / bench --out at random "
                                             "points; check outputs are whole or absent (issue 20 item 5)")
    ap.add_argument("--kills", type=int, default=5, help="random kill points per command (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill delays (default 0)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    ap.add_argument("--only", action="append", choices=["export", "compress", "segment", "bench"],
                    help="run only this command (repeatable)")
    ap.add_argument("--json", "--out", dest="json_out", type=Path, default=None, help="write the JSON report here")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="print one table from the JSON reports of earlier runs (with --json: write it) and exit")
    args = ap.parse_args(argv)
    if args.merge:
        merged = merge([json.loads(p.read_text()) for p in args.merge])
        print(render_table(merged))
        if args.json_out:
            from ..fsutil import write_text_atomic

            write_text_atomic(args.json_out, json.dumps(merged, indent=2))
        return merged
    import tempfile

    from rich.console import Console

    console = Console(stderr=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_points."))
    t0 = time.time()

    def save(report: dict[str, Any]) -> None:
        if args.json_out:
            from ..fsutil import write_text_atomic

            write_text_atomic(args.json_out, json.dumps({**report, "argv": sys.argv[1:],
                                                         "wall_s": round(time.time() - t0, 1)}, indent=2))

    with console.status("kill points") as status:
        report = run_kill_points(work, kills=args.kills, seed=args.seed, only=args.only,
                                 progress=lambda s: status.update(s), on_command=save)
    report["wall_s"] = round(time.time() - t0, 1)
    print(render_table(report))
    save(report)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in report["rows"] if not passed(r)]
    if failed:
        print(f"FAILED: {', '.join(r['command'] for r in failed)}", file=sys.stderr)
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
