"""Serving PageGrid as ``make run`` does, for the tests, the benches and the e2e runner alike.

gunicorn runs in a process group of its own, so stopping it stops exactly what was started
(never anything else on the machine, whatever its name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    """A port free on loopback right now (a tiny window remains until the server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without PageGrid's and the providers' variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEGRID_", "ANTHROPIC_", "OPENAI_"))}
    env.update(extra or {})
    return env


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` with ``env``, logging to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "PAGEGRID_BIND": f"127.0.0.1:{self.port}"}
        self.log_path = log_path
        self._log = open(log_path, "w+b")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout: float = 120) -> str:
        """``flask --app app ARGS`` against this gateway's database and settings; its stdout."""
        done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"flask {args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return done.stdout

    def start(self, timeout: float = 60) -> Gunicorn:
        """Start and wait until ``HEAD /v1`` answers 200 (RuntimeError with the log if not)."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start gunicorn without waiting for it (``wait_ready`` does)."""
        self.proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                     cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until ``HEAD /v1`` answers 200; stop it and raise with its log if it does not."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(requests.RequestException):  # not listening, or still booting
                if requests.head(f"{self.url}/v1", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        """Everything gunicorn logged so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 15) -> None:
        """Graceful stop (SIGTERM to the master); SIGKILL to the whole group if it lingers."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:  # a graceful stop still waiting on connections
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc is not None:  # workers that outlived their master
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> Gunicorn:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
