"""Delivering alert notices: a line in the log, and a JSON POST to a webhook.

The webhook gets one POST per notice (a rule fired, or resolved), with a timeout of
``TIMEOUT_SECONDS`` and one retry ``RETRY_PAUSE_SECONDS`` later when the first attempt failed
for a reason a retry can cure (no answer, a connection error, a 5xx, 408 or 429). Whatever
happened is recorded with the evaluation (``delivery.webhook``: ``sent`` or ``failed``, the
attempts, the HTTP status, the error). The URL itself is never recorded nor logged: webhook
URLs often carry a secret token.

The body (``payload``) has a ``text`` line, so chat services' incoming webhooks (Slack,
Mattermost) show it as it is, and every field of the evaluation for programs.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Final

from tallystick.version import __version__

if TYPE_CHECKING:
    from tallystick.quality.alerts import AlertRun

log = logging.getLogger("tallystick.alerts")

TIMEOUT_SECONDS: Final = 5.0
RETRY_PAUSE_SECONDS: Final = 1.0
_RETRY_STATUSES: Final = frozenset({408, 429})


class WebhookError(ValueError):
    """A webhook URL that cannot be used."""


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else a WebhookError saying what to give."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(
            "the webhook must be an http:// or https:// URL with a host, such as "
            "https://hooks.example.org/tally"
        )
    return url


def _subject(run: AlertRun) -> str:
    """``stream product`` or ``experiment signin-dialog``: what the rule watches."""
    key = run.experiment
    return f"stream {run.stream}" if key is None else f"experiment {key}"


def payload(run: AlertRun, notice: str) -> dict[str, Any]:
    """The JSON body POSTed for a notice; an experiment's rule adds ``experiment`` (its key)
    and ``link`` (its dashboard page, a path on the server)."""
    from tallystick.quality.experiment_alerts import link

    head = "FIRING" if notice == "fired" else "RESOLVED"
    extra = (
        {}
        if run.experiment is None
        else {
            "experiment": run.experiment,
            "link": link(run.experiment),
        }
    )
    return {
        "text": f"[tallystick] {head} {run.stream} {run.label}: {run.message}",
        "source": "tallystick",
        "version": __version__,
        "notice": notice,
        "at": run.as_dict()["at"],
        "stream": run.stream,
        "rule": run.rule,
        "label": run.label,
        "fired": run.fired,
        "value": run.value,
        "expected": run.expected,
        "message": run.message,
        "spec": dict(run.spec),
        **extra,
    }


def _attempt(url: str, body: bytes, timeout: float) -> tuple[int | None, str | None]:
    """One POST: (HTTP status, error) — error ``None`` on a 2xx answer."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"tallystick/{__version__}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code), f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(reason).__name__}: {reason}"


def post(
    url: str,
    body: dict[str, Any],
    *,
    timeout: float = TIMEOUT_SECONDS,
    retry_pause: float = RETRY_PAUSE_SECONDS,
) -> dict[str, Any]:
    """POST ``body`` as JSON, retrying once; what happened, as recorded in ``delivery``."""
    data = json.dumps(body, ensure_ascii=False).encode()
    status, error = _attempt(url, data, timeout)
    attempts = 1
    if error is not None and (status is None or status >= 500 or status in _RETRY_STATUSES):
        time.sleep(retry_pause)
        status, error = _attempt(url, data, timeout)
        attempts = 2
    return {
        "status": "sent" if error is None else "failed",
        "attempts": attempts,
        "http_status": status,
        "error": error,
    }


def deliver(
    run: AlertRun,
    notice: str,
    webhook_url: str | None,
    *,
    timeout: float = TIMEOUT_SECONDS,
    retry_pause: float = RETRY_PAUSE_SECONDS,
) -> dict[str, Any]:
    """Log the notice and POST it to ``webhook_url`` (when given); the ``delivery`` record."""
    head = "alert fired" if notice == "fired" else "alert resolved"
    log.warning("%s: %s, %s: %s", head, _subject(run), run.label, run.message)
    webhook = None
    if webhook_url:
        webhook = post(webhook_url, payload(run, notice), timeout=timeout, retry_pause=retry_pause)
        if webhook["status"] != "sent":
            log.warning(
                "alert webhook failed after %d attempt(s) for %s, %s: %s",
                webhook["attempts"],
                _subject(run),
                run.label,
                webhook["error"],
            )
    return {"notice": notice, "log": True, "webhook": webhook}
