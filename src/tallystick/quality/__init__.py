"""Data quality: loss and duplicate accounting (issue 6, points 2 and 3).

``loss`` is the plain-Python reference of the loss and duplicate report; ``loss_sql`` is the same
computation in DuckDB SQL over the lake's ``raw_events`` view. Neither is wired into the CLI, the
HTTP API or the data-health page yet.
"""

from __future__ import annotations

from tallystick.quality.loss import LossRow, Message, loss_report, payload_fingerprint

__all__ = ["LossRow", "Message", "loss_report", "payload_fingerprint"]
