"""Entry point of the loader process that ``tally serve`` starts (kept light on purpose).

The loader ignores SIGINT and SIGTERM: ``tally serve`` tells it to stop through ``stop`` after
the collector processes have sealed their spool segments, so its last pass loads everything.
If ``tally serve`` dies without telling it, the loader notices its parent is gone and drains too.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

from tallystick.config import Settings

if TYPE_CHECKING:
    from tallystick.store.loader import StopSignal


def run_loader_process(settings: Settings, parent_pid: int, stop: StopSignal) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from tallystick.privacy import logs

    logs.install()  # no client address or personal data in the loader's logs
    from tallystick.store.loader import Loader

    Loader(settings).run(stop, alive=lambda: os.getppid() == parent_pid)
