"""The demo product: a university research data and compute portal, and a sender for its events.

``generate()`` yields synthetic monoschema v1 events (pure and seeded); ``send()`` posts them to a
collector in gzip-compressed batches.
"""

from __future__ import annotations

from tallystick.demo.generator import DemoSpec, Site, generate, summary
from tallystick.demo.send import SendError, SendResult, send

__all__ = ["DemoSpec", "SendError", "SendResult", "Site", "generate", "send", "summary"]
