"""Run the collector: uvicorn worker processes plus one loader process.

``serve`` is what ``tally serve`` runs. ``ServerProcess`` starts ``tally serve`` as a child
process on loopback and waits until it is ready; the demo, the tests and the benchmarks use it.
``AlertLoop`` evaluates the alert rules every ``alert_interval_seconds`` in the process that runs
``serve`` (one evaluator per data directory, however many workers).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Final

from tallystick.config import ConfigError, Settings, from_env

if TYPE_CHECKING:
    from tallystick.control.keys import Keyed

log = logging.getLogger("tallystick.alerts")

FIRST_ALERT_DELAY_SECONDS: Final = 10.0
"""The first evaluation waits this long (or the interval, when shorter): the workers start first."""


def app_from_env() -> object:
    """uvicorn factory: each worker process builds its app from ``TALLYSTICK_*`` variables, and
    warms up its query API and dashboard in the background unless ``warm_up`` is off (see
    ``Collector.warm_up``)."""
    from tallystick.admin.flag_stream import watch_signals
    from tallystick.collect.app import create_app
    from tallystick.privacy import logs

    logs.install()  # no client address or personal data in this worker's logs
    watch_signals()  # flag streams end at once on SIGTERM: they must not hold the shutdown
    app = create_app(from_env())
    if app.settings.warm_up:
        threading.Thread(target=app.warm_up, name="warm-up", daemon=True).start()
    return app


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "warning",
) -> None:
    """Serve until SIGTERM or Ctrl-C; on the way out the loader drains the spool into the lake."""
    import uvicorn

    from tallystick.privacy import logs
    from tallystick.store.loader_main import run_loader_process

    logs.install()  # no client address or personal data in the server's logs (docs/privacy.md)

    settings.data.mkdir(parents=True, exist_ok=True)
    check_alert_settings(settings)
    migrate_control_plane(settings)
    check_access(settings, host)
    os.environ.update(settings.to_env())
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    loader = ctx.Process(
        target=run_loader_process,
        args=(settings, os.getpid(), stop),
        name="tallystick-loader",
        daemon=False,
    )
    loader.start()
    alerts = AlertLoop(settings).start() if settings.alert_interval_seconds > 0 else None
    # uvicorn re-raises the signal that stopped it once it is done; with this handler installed
    # that is a no-op, so the loader below gets its orderly last pass.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
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
    except KeyboardInterrupt:
        pass
    finally:
        if alerts is not None:
            alerts.close()
        stop.set()
        loader.join(timeout=300)
        if loader.exitcode != 0:
            drain(settings)


def check_alert_settings(settings: Settings) -> None:
    """A webhook URL that cannot be used stops ``tally serve`` at once, saying why."""
    from tallystick.quality.alert_delivery import WebhookError, check_url

    if settings.alert_interval_seconds < 0:
        raise ConfigError("alert_interval_seconds must be 0 (off) or more")
    if settings.alert_webhook_url:
        try:
            check_url(settings.alert_webhook_url)
        except WebhookError as exc:
            raise ConfigError(f"alert_webhook_url: {exc}") from None


class AlertLoop:
    """Evaluates the alert rules every ``alert_interval_seconds`` in a thread, as ``tally quality
    check`` does (notices on a change, to the log and ``alert_webhook_url``; every evaluation
    recorded). A failed evaluation is logged and tried again at the next interval: alerts never
    stop the server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tallystick-alerts", daemon=True)
        self.evaluations = 0
        self.failures = 0

    def start(self) -> AlertLoop:
        if not log.hasHandlers():  # the server's log: its stderr
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
            log.addHandler(handler)
        self.thread.start()
        return self

    def evaluate(self) -> None:
        """One evaluation of every rule: the streams' and the running experiments' (their
        metrics from the catalog as it is now)."""
        from tallystick.control.store import ControlStore
        from tallystick.metrics.catalog import read_catalog
        from tallystick.quality.alerts import check
        from tallystick.store.lake import Lake

        catalog, _ = read_catalog(self.settings.catalog_dir)  # a broken file: its metrics left out
        with ControlStore.open(self.settings.control_database, migrate=False) as store:
            check(
                store,
                Lake(self.settings.lake_dir),
                catalog=catalog,
                webhook_url=self.settings.alert_webhook_url,
            )

    def _run(self) -> None:
        interval = self.settings.alert_interval_seconds
        wait = min(interval, FIRST_ALERT_DELAY_SECONDS)
        while not self.stopping.wait(wait):
            wait = interval
            try:
                self.evaluate()
                self.evaluations += 1
            except Exception as exc:  # logged; the next interval tries again
                self.failures += 1
                log.error(
                    "alert evaluation failed (%s: %s); trying again in %g s",
                    type(exc).__name__,
                    exc,
                    interval,
                    exc_info=self.failures == 1,  # the whole story once, then one line
                )

    def close(self, timeout: float = 15.0) -> None:
        """Stop after the evaluation under way (a webhook may take its timeout twice)."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)


def is_loopback_host(host: str) -> bool:
    """Whether ``tally serve --host`` listens on this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def keyed_kinds(settings: Settings) -> Keyed:
    """Which kinds of request need a key, from the control plane and the settings."""
    from tallystick.control.keys import Verifier
    from tallystick.control.store import ControlStore

    store = ControlStore.open(settings.control_database, migrate=False)
    try:
        verifier = Verifier(store, settings)
        try:
            return verifier.keyed()
        finally:
            verifier.close()
    finally:
        store.close()


KEY_COMMANDS: Final = {
    "write": "tally keys create --kind write --name NAME --app APP [--origin URL]",
    "read": "tally keys create --kind read --name NAME",
    "admin": "tally keys create --kind admin --name NAME",
}


def check_access(settings: Settings, host: str) -> Keyed:
    """Refuse to listen beyond loopback while any kind of request is open (``ConfigError``,
    naming the ``tally keys create`` commands to run); on loopback, say loudly on standard error
    which kinds are open (open mode)."""
    keyed = keyed_kinds(settings)
    missing = [
        kind
        for kind, has in (("write", keyed.write), ("read", keyed.read), ("admin", keyed.admin))
        if not has
    ]
    if not missing:
        return keyed
    if not is_loopback_host(host):
        commands = "; ".join(f"`{KEY_COMMANDS[kind]}`" for kind in missing)
        raise ConfigError(
            f"refusing to listen on {host}: open mode (no key needed) is for loopback only, and "
            f"this server has no {', '.join(missing)} key. Create them first: {commands} "
            "(or listen on 127.0.0.1). See docs/access.md."
        )
    banner = (
        "OPEN MODE: "
        + "; ".join(keyed.open_kinds)
        + (
            ". Anyone who can reach this machine's loopback may do that. Create keys with "
            "`tally keys create` before listening on another address (docs/access.md)."
        )
    )
    print(f"\n{'!' * 78}\n{banner}\n{'!' * 78}\n", file=sys.stderr, flush=True)
    return keyed


def migrate_control_plane(settings: Settings) -> None:
    """Bring the control plane's tables up to date once, before any worker opens them."""
    from tallystick.control.store import ControlStore

    ControlStore.open(settings.control_database).close()


def drain(settings: Settings) -> None:
    """Load whatever is left in the spool (used when the loader process is gone)."""
    import threading

    from tallystick.store.loader import Loader

    done = threading.Event()
    done.set()
    Loader(settings).run(done)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``tally serve`` in a child process (its own process group) on loopback."""

    def __init__(
        self,
        data: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        workers: int = 1,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = data
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "tallystick",
            "serve",
            "--data",
            str(self.data),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.extra_args,
        ]
        env = {**os.environ, **self.env}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=self.log
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"tally serve exited with {self.proc.returncode}: {self.output()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"tally serve was not ready at {self.url} after {timeout} s")

    def output(self) -> str:
        """What the server wrote to stderr so far."""
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

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
            self.proc.send_signal(signal.SIGTERM)  # the server stops its own children in order
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
