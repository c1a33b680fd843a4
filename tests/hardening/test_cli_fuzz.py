"""A generated table of bad values for every option and argument of every CLI command (issue 20,
Build item 3).

The table is built by introspecting the Typer app (``slimsam_edge.cli.app``): each command's
parameters and their annotated types. Per type, bad values are generated (ints: 0, -1, 10**12,
'x', ''; floats: nan, inf, -1, 'x'; paths: missing, a folder, a FIFO, an empty file, a garbage
file, a path under a regular file, a too-long name; choices: an unknown one; flags: given a
value; free text: '', 'x', 'nan,inf', a 5000-character string). Each case runs in-process with
all other arguments valid and must end in

- exit 0 (a valid result), or
- exit 2 with exactly one ``error: ...`` line on stderr and no traceback, or
- (long commands only) the command accepting the value and reaching the point where its long work
  starts: that entry point is replaced by a sentinel, so a case never trains or exports.

Never exit 1, never an uncaught exception, never a hang (each case is bounded by an alarm that
only bounds the test). A new command or option is covered automatically; the per-command count
test fails if a command has no case, or if the table has no recipe for a command.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from slimsam_edge.cli.app import app

#: per case, the test gives up (and fails) after this many seconds: bounds a hang, never a timing assertion
CASE_LIMIT_S = 120


class WorkStarted(BaseException):
    """Raised by the sentinel that replaces a long command's work: the value was accepted."""


#: where each long command's real work starts (module, attribute): replaced by the sentinel
WORK = {
    "compress": [("slimsam_edge.compress.job", "_run")],
    "export": [("slimsam_edge.exporters.bundle_export", "export_bundle")],
    "train-reference": [("slimsam_edge.reference.train", "train")],
    "bench": [("slimsam_edge.bench.harness", "run_config")],
    "demo": [("slimsam_edge.demo", "run_demo")],
    "eval": [("slimsam_edge.eval.evaluate", "evaluate")],
    "build": [("slimsam_edge.deploy.build", "build_bundle")],
}


# ---------------------------------------------------------------------------------------------
# introspection


@dataclass(frozen=True)
class Param:
    command: str  # "segment", "data video"
    name: str  # python name
    opts: tuple[str, ...]  # ("--out", "-o"); () for an argument
    secondary: tuple[str, ...]  # ("--no-validate",)
    kind: str  # int | float | path | str | choice | flag
    choices: tuple[str, ...] = ()
    argument: bool = False


def _kind(annotation: typing.Any) -> tuple[str, tuple[str, ...]]:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        annotation = typing.get_args(annotation)[0]
    if origin is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", tuple(str(m.value) for m in annotation)
    if annotation is bool:
        return "flag", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path", ()
    if annotation is str:
        return "str", ()
    raise AssertionError(f"no bad values for parameter type {annotation!r}: add them to the table")


def cli_params() -> list[Param]:
    """Every parameter of every command of the app (help/version options aside)."""
    root = typer.main.get_command(app)
    out: list[Param] = []

    def walk(cmd: typing.Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, path + [name])
            return
        for p in cmd.params:
            if p.name in ("help",):
                continue
            kind, choices = _kind(p.type_descriptor.annotation)
            argument = type(p).__name__.endswith("Argument")
            out.append(Param(" ".join(path), p.name, tuple(p.opts) if not argument else (),
                             tuple(p.secondary_opts or ()) if not argument else (), kind, choices, argument))

    walk(root, [])
    return out


def commands() -> list[str]:
    return sorted({p.command for p in cli_params()})


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass
class Inputs:
    root: Path
    bundle: Path
    image: Path
    data: Path
    video: Path
    checkpoint: Path
    bad: dict[str, Path] = field(default_factory=dict)
    counter: list[int] = field(default_factory=lambda: [0])

    def fresh(self, name: str) -> Path:
        """A new path (not existing) for an output."""
        self.counter[0] += 1
        d = self.root / "out" / f"{self.counter[0]:04d}"
        d.mkdir(parents=True)
        return d / name


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mini_bundle) -> Inputs:
    import cv2

    from helpers import photo
    from slimsam_edge.data.procedural import write_procedural
    from slimsam_edge.data.synth_video import ProceduralVideo, write_video_dataset

    root = tmp_path_factory.mktemp("fuzz")
    image = root / "photo.png"
    cv2.imwrite(str(image), photo((64, 96), seed=3)[..., ::-1])
    write_procedural(root / "data", 2, seed=0, size=64)
    write_video_dataset(ProceduralVideo(seed=0, frames=2, size=(64, 64), objects=1), root / "clip", mp4=False)
    bad = {
        "missing": root / "missing" / "nothing.png",
        "folder": root / "a_folder.png",
        "fifo": root / "a_fifo.png",
        "empty": root / "empty.png",
        "garbage": root / "garbage.png",
        "under_file": root / "garbage.png" / "inside.png",
        "too_long": root / ("n" * 300 + ".png"),
    }
    bad["folder"].mkdir()
    os.mkfifo(bad["fifo"])
    bad["empty"].write_bytes(b"")
    bad["garbage"].write_bytes(bytes(range(256)) * 8)
    return Inputs(root, mini_bundle, image, root / "data", root / "clip", mini_bundle / "model.safetensors", bad)


# ---------------------------------------------------------------------------------------------
# valid arguments per command (the fuzzed parameter replaces its own entry, if any)

Argv = list  # of (name or None, tokens)


def base_args(command: str, inp: Inputs, param: Param) -> list[tuple[str | None, list[str]]]:
    """``[(param name, tokens)]`` that make ``command`` valid (and cheap) apart from ``param``."""
    b, img = str(inp.bundle), str(inp.image)
    everything = command == "segment" and param.name in ("points_per_side", "pred_iou_thresh", "stability_thresh",
                                                         "min_area", "everything")
    table: dict[str, list[tuple[str | None, list[str]]]] = {
        "info": [("checkpoint", [b])],
        "compress": [("out", ["--out", str(inp.fresh("run"))]), ("steps", ["--steps", "1"])]
                    + ([] if param.name in ("preset", "target_params") else [("ratio", ["--ratio", "0.5"])]),
        "export": [("out", ["--out", str(inp.fresh("bundle"))]), ("checkpoint", [str(inp.checkpoint)])],
        "build": [("bundle", [b])],
        "segment": ([("image", [img]), ("bundle", ["--bundle", b]), ("everything", ["--everything"]),
                     ("points_per_side", ["--points-per-side", "2"]), ("out", ["--out", str(inp.fresh("m.json"))])]
                    if everything else
                    [("image", [img]), ("bundle", ["--bundle", b]), ("point", ["--point", "10,10"]),
                     ("out", ["--out", str(inp.fresh("m.png"))])]),
        "bench": [("bundle", [b])],
        "devices": [],
        "eval": [("model_or_bundle", [b]), ("data", ["--data", str(inp.data)]), ("limit", ["--limit", "1"])],
        "eval-video": [("video_dir", [str(inp.video)]), ("bundle", ["--bundle", b]),
                       ("backend", ["--backend", "onnxruntime"])],
        "demo": [("out", ["--out", str(inp.fresh("demo"))])],
        "train-reference": [("out", ["--out", str(inp.fresh("run"))])],
        "verify": [("bundle", [b])],
        "video": [("source", [str(inp.video / "frames")]), ("bundle", ["--bundle", b]),
                  ("point", ["--point", "10,10"]), ("out", ["--out", str(inp.fresh("o.mp4"))]),
                  ("max_frames", ["--max-frames", "2"])],
        "data procedural": [("out", ["--out", str(inp.fresh("proc"))]), ("count", ["--count", "1"]),
                            ("size", ["--size", "32"])],
        "data video": [("out", ["--out", str(inp.fresh("clip"))]), ("frames", ["--frames", "2"]),
                       ("size", ["--size", "32"]), ("mp4", ["--no-mp4"])],
        "data inspect": [("path", [str(inp.data)])],
    }
    if command not in table:
        raise AssertionError(f"command {command!r} has no valid arguments in the fuzz table: add them to base_args")
    return [(n, t) for n, t in table[command] if n != param.name]


# ---------------------------------------------------------------------------------------------
# bad values per kind

INT_BAD = ["0", "-1", str(10**12), "x", ""]
FLOAT_BAD = ["nan", "inf", "-1", "x"]
STR_BAD = ["", "x", "nan,inf", "9" * 5000]
PATH_BAD = ["missing", "folder", "fifo", "empty", "garbage", "under_file", "too_long"]


def bad_values(param: Param) -> list[str]:
    """Case ids for a parameter (the value is resolved per case: paths need the inputs)."""
    return {
        "int": [f"int:{v}" for v in INT_BAD],
        "float": [f"float:{v}" for v in FLOAT_BAD],
        "str": [f"str:{i}" for i in range(len(STR_BAD))],
        "path": [f"path:{v}" for v in PATH_BAD],
        "choice": ["choice:bogus"],
        "flag": ["flag:value"],
    }[param.kind]


def tokens_for(param: Param, case: str, inp: Inputs) -> list[str]:
    kind, _, value = case.partition(":")
    if kind == "str":
        value = STR_BAD[int(value)]
    elif kind == "path":
        value = str(inp.bad[value])
    elif kind == "choice":
        value = "bogus-choice"
    if kind == "flag":
        return [f"{param.opts[0]}=x"]
    if param.argument:
        return [value]
    return [param.opts[0], value]


#: (command, parameter, case) -> reason: cases known to fail on code another helper owns (the lead
#: flips them after merging); strict, so a fixed case fails until its entry is removed
XFAIL: dict[tuple[str, str, str], str] = {}

#: cases refused while parsing or by the path guard, before any work: the quick default subset;
#: the others (values that may be accepted and run a command) are marked slow
FAST_CASES = {"flag:value", "choice:bogus", "int:x", "int:", "float:x", "path:fifo", "path:under_file",
              "path:too_long"}


def all_cases() -> list[tuple[Param, str]]:
    return [(p, c) for p in cli_params() for c in bad_values(p)]


def _case_id(pc: tuple[Param, str]) -> str:
    p, c = pc
    return f"{p.command.replace(' ', '-')}:{p.opts[0] if p.opts else p.name}:{c[:24]}"


def _params() -> list:
    out = []
    for p, c in all_cases():
        reason = XFAIL.get((p.command, p.name, c))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        if c not in FAST_CASES:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(p, c, id=_case_id((p, c)), marks=marks))
    return out


# ---------------------------------------------------------------------------------------------
# the table


def test_every_command_has_cases():
    """Adding a command or an option adds cases; a command without a recipe fails here."""
    counts: dict[str, int] = {}
    for p, _ in all_cases():
        counts[p.command] = counts.get(p.command, 0) + 1
    root = typer.main.get_command(app)
    names = []

    def walk(cmd: typing.Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
        else:
            names.append(" ".join(path))

    walk(root, [])
    assert sorted(names) == sorted(counts), (names, counts)
    assert all(n > 0 for n in counts.values()), counts
    dummy = Inputs(Path("/nonexistent"), Path("b"), Path("i"), Path("d"), Path("v"), Path("c"))
    dummy.fresh = lambda name: Path("/nonexistent") / name  # type: ignore[method-assign]
    for command in counts:
        base_args(command, dummy, Param(command, "-", (), (), "int"))  # raises for a command without a recipe
    print("fuzz cases per command:", dict(sorted(counts.items())), "total", sum(counts.values()))


runner = CliRunner()

#: (command, outcome) -> cases: "refused" (exit 2, one line), "valid" (exit 0), "accepted" (long work reached)
OUTCOMES: dict[tuple[str, str], int] = {}


@pytest.fixture(scope="module", autouse=True)
def _outcome_summary():
    """Print the outcomes per command after the table (shown with ``-s``; the figures in docs/reliability.md)."""
    yield
    if OUTCOMES:
        per: dict[str, dict[str, int]] = {}
        for (command, outcome), n in sorted(OUTCOMES.items()):
            per.setdefault(command, {})[outcome] = n
        print("\nCLI fuzz outcomes:", per, "total", sum(OUTCOMES.values()))


def _record(command: str, outcome: str) -> None:
    OUTCOMES[(command, outcome)] = OUTCOMES.get((command, outcome), 0) + 1


class CaseHang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the code under test hides it."""


def _alarm(signum, frame):  # noqa: ARG001
    raise CaseHang(f"case still running after {CASE_LIMIT_S} s (a hang?)")


@pytest.mark.parametrize(("param", "case"), _params())
def test_bad_value(param: Param, case: str, inputs: Inputs, monkeypatch):
    import importlib

    command = param.command
    for module, attr in WORK.get(command, []):
        def sentinel(*args, **kwargs):
            raise WorkStarted()

        monkeypatch.setattr(importlib.import_module(module), attr, sentinel)
    monkeypatch.chdir(inputs.fresh("cwd").parent)  # relative defaults (demo-output, runs/) land in a fresh folder
    argv = command.split()
    for _, tokens in base_args(command, inputs, param):
        argv += tokens
    argv += tokens_for(param, case, inputs)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    try:
        result = runner.invoke(app, argv)
    except WorkStarted:
        _record(command, "accepted")
        return  # accepted; the long work would start here
    except CaseHang as hang:
        pytest.fail(f"{hang}: argv {argv}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(result.exception, WorkStarted):
        _record(command, "accepted")
        return
    shown = f"argv: {argv}\nexit {result.exit_code}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.exit_code in (0, 2), shown
    assert "Traceback" not in result.output, shown
    if result.exit_code == 2:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), shown
    else:
        assert result.exception is None or isinstance(result.exception, SystemExit), shown
        if "--json" in argv:
            json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    _record(command, "refused" if result.exit_code == 2 else "valid")
