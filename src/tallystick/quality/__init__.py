"""Data quality (issue 6): loss and duplicate accounting, clock skew, and the reports built on them.

``loss`` is the plain-Python reference of the loss and duplicate report and ``loss_sql`` the same
computation in DuckDB SQL over the lake's delivery ledger (the ``messages`` view); ``skew`` is
the clock-skew report (reference and SQL); ``reports`` checks the reports' parameters and builds
the answers that ``tally quality loss|skew``, ``GET /v1/quality/loss|skew`` and the dashboard's
Data health page show.
"""

from __future__ import annotations

from tallystick.quality.loss import LossRow, Message, loss_report, payload_fingerprint

__all__ = ["LossRow", "Message", "loss_report", "payload_fingerprint"]
