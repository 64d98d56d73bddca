"""`tally demo` stops the server it started when it is stopped: by Ctrl-C (SIGINT) or by
`kill` (SIGTERM), it never leaves a collector running on the port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tallystick.collect.server import free_port

pytestmark = pytest.mark.e2e


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_demo_stops_its_server(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    args = ["--data", str(tmp_path / "d"), "--users", "20", "--days", "8", "--port", str(port)]
    with subprocess.Popen(
        [sys.executable, "-m", "tallystick", "demo", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:
        try:
            assert demo.stderr is not None
            for line in demo.stderr:  # the demo says "Serving" once the data is in
                if "Serving" in line:
                    break
            else:
                pytest.fail(f"the demo ended before serving (exit {demo.wait()})")
            assert listening(port)
            demo.send_signal(sig)
            assert demo.wait(timeout=60) == 0 or sig == signal.SIGINT
            deadline = time.monotonic() + 30
            while listening(port) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not listening(port), "the demo's server kept running after the demo stopped"
        except BaseException:
            _stop_server_on(tmp_path / "d")
            raise
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()


def _stop_server_on(data: Path) -> None:
    """After a failure, stop a server the demo left behind (found by its data directory)."""
    subprocess.run(["pkill", "-f", f"tallystick serve --data {data}"], check=False)
