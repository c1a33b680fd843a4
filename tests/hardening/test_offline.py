"""No network and nothing written under the home directory (issue 20, item 1; slimsam_edge/offline.py).

Before the fix, ``import openvino`` (its conversion tools) sent a telemetry event from a forked
child and kept a client id in ``~/intel``; every OpenVINO conversion of an export sent more (78
DNS lookups in one ``export --target cpu``, seen with strace); ONNX Runtime created a device id
and a usage database under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` at its first
session. Each test runs every command once on the tiny model (export -> verify -> segment on
OpenVINO -> bench -> eval), the export for the cpu target (ONNX Runtime and OpenVINO).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]

#: the commands of the issue, on a bundle exported here (placeholders: {ckpt}, {work})
COMMANDS = [
    ["export", "{ckpt}", "--out", "{work}/bundle", "--target", "cpu", "--no-validate"],
    ["verify", "{work}/bundle"],
    ["segment", "{work}/data/proc_0_000000.png", "--bundle", "{work}/bundle", "--out", "{work}/mask.png",
     "--point", "40,40", "--backend", "openvino"],
    ["bench", "{work}/bundle", "--backend", "onnxruntime", "--backend", "openvino", "--runs", "1", "--warmup", "0",
     "--prompts", "1", "--image-size", "64x64", "--out", "{work}/bench.json"],
    ["eval", "{work}/bundle", "--data", "{work}/data", "--limit", "1", "--out", "{work}/eval.json"],
]


def _commands(ckpt: Path, work: Path) -> list[list[str]]:
    return [[a.format(ckpt=ckpt, work=work) for a in cmd] for cmd in COMMANDS]


def _procedural(work: Path) -> None:
    from slimsam_edge.data.procedural import write_procedural

    write_procedural(work / "data", 1, size=(96, 96))


def test_offline_switches_are_set_in_process():
    """The switches themselves: ORT's opt-out variable, OpenVINO's telemetry module unimportable."""
    import slimsam_edge.runtimes  # noqa: F401  (imports offline first)
    from slimsam_edge import offline

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert sys.modules["openvino_telemetry"] is None
    with pytest.raises(ImportError):
        import openvino_telemetry  # noqa: F401
    assert offline.ensure_offline() is True  # idempotent


def test_no_connection_attempted_in_process(tmp_path, tiny_checkpoint, monkeypatch):
    """Every command, in this process, with sockets blocked: nothing tries to connect or resolve a
    name. Attempts are appended to a file, so a forked child (OpenVINO's telemetry sender) counts too."""
    from slimsam_edge.cli.app import app

    log = tmp_path / "attempts.log"

    def blocked(what):
        def refuse(*args, **kwargs):
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {what} {args[1:] if what.startswith('socket.') else args}\n")
            raise OSError(f"network blocked by test_offline: {what}")
        return refuse

    def unix_allowed(original, what):
        refuse = blocked(what)

        def connect(sock, address, *rest):
            if sock.family == getattr(socket, "AF_UNIX", None):  # local IPC (e.g. nscd), not network
                return original(sock, address, *rest)
            return refuse(sock, address, *rest)
        return connect

    monkeypatch.setattr(socket.socket, "connect", unix_allowed(socket.socket.connect, "socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", unix_allowed(socket.socket.connect_ex, "socket.connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", blocked("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", blocked("gethostbyname"))
    monkeypatch.setattr(socket, "create_connection", blocked("create_connection"))

    _procedural(tmp_path)
    runner = CliRunner()
    for cmd in _commands(tiny_checkpoint, tmp_path):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0, f"{cmd[0]}: {result.output}"
    assert not log.exists(), log.read_text(encoding="utf-8")
    assert (tmp_path / "mask.png").is_file() and (tmp_path / "eval.json").is_file()


_DRIVER = textwrap.dedent("""
    import json, sys
    from slimsam_edge.cli.app import app  # the CLI entry, as `slimsam-edge` imports it

    for cmd in json.loads(sys.argv[1]):
        try:
            app(cmd, standalone_mode=False)
        except SystemExit as stop:
            if stop.code not in (0, None):
                raise
""")


def test_home_and_xdg_dirs_stay_empty(tmp_path, tiny_checkpoint):
    """A fresh process (nothing imported before the CLI) running every command with HOME,
    XDG_CACHE_HOME and XDG_CONFIG_HOME pointed at an empty folder: afterwards it is still empty."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    _procedural(work)
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "SLIMSAM_EDGE_ALLOW_TELEMETRY")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"),
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(_commands(tiny_checkpoint, work))],
                          env=env, cwd=work, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "bench.json").is_file() and (work / "eval.json").is_file()
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"written under the home directory: {written}"
