"""The collector's own logs follow the rules of its storage: no raw client address, no PII.

``install()`` wraps the process's log-record factory, so that every record, from every logger
(``tallystick.*``, uvicorn's, libraries'), is cleaned when it is made, before any handler sees
it: in the message and in the text of an attached exception, emails, phone numbers and
card-number-like digits become ``[email]``, ``[phone]``, ``[card]``, and public IP addresses
their network (``203.0.113.0/24``, ``2001:db8:1234::/48``), as ``geo.network`` stores them.
Loopback and unspecified addresses (``127.0.0.1``, ``::``, ``0.0.0.0``: where the server
listens) are kept.

uvicorn's access log (one line per request, with the client's address) is off in
``tally serve``. ``tally serve``, each collector worker and the loader process install this.
"""

from __future__ import annotations

import ipaddress
import logging
import traceback
from typing import Any

from tallystick.privacy import pii

_installed = False


def _replacement(finding: pii.Finding) -> str:
    if finding.kind != "ip":
        return f"[{finding.kind}]"
    try:
        address = ipaddress.ip_address(finding.value)
    except ValueError:
        return "[ip]"
    if address.is_loopback or address.is_unspecified:
        return finding.value
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def clean(text: str) -> str:
    """``text`` as a log may show it."""
    if not pii.maybe(text):
        return text
    found = pii.find(text)
    return pii.replace(text, found, _replacement) if found else text


def clean_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with its message and exception text cleaned (in place)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to the handler to report
        return record
    cleaned = clean(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = clean(text)
    return record


def install() -> None:
    """Clean every log record this process makes from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return clean_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
