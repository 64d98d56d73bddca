"""Run the collector: uvicorn worker processes plus one loader process.

``serve`` is what ``tally serve`` runs. ``ServerProcess`` starts ``tally serve`` as a child
process on loopback and waits until it is ready; the demo, the tests and the benchmarks use it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tallystick.config import Settings, from_env


def app_from_env() -> object:
    """uvicorn factory: each worker process builds its app from ``TALLYSTICK_*`` variables."""
    from tallystick.collect.app import create_app

    return create_app(from_env())


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "warning") -> None:
    """Serve until interrupted; on exit the loader drains the spool into the lake."""
    import uvicorn

    from tallystick.store.loader import run_loader_process

    settings.data.mkdir(parents=True, exist_ok=True)
    os.environ.update(settings.to_env())
    ctx = multiprocessing.get_context("spawn")
    loader = ctx.Process(target=run_loader_process, args=(settings, os.getpid()),
                         name="tallystick-loader", daemon=False)
    loader.start()
    try:
        uvicorn.run(
            "tallystick.collect.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=10,
        )
    finally:
        if loader.pid is not None and loader.is_alive():
            os.kill(loader.pid, signal.SIGTERM)
        loader.join(timeout=60)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``tally serve`` in a child process (its own process group) on loopback."""

    def __init__(self, data: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 workers: int = 1, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.data = data
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "tallystick", "serve", "--data", str(self.data),
               "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
               *self.extra_args]
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"tally serve exited with {self.proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"tally serve was not ready at {self.url} after {timeout} s")

    def kill(self) -> None:
        """SIGKILL the whole process group (collector workers and loader)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_pipes()

    def stop(self, timeout: float = 60.0) -> int:
        """Stop gracefully (SIGTERM): the spool is sealed and loaded before the process exits."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
