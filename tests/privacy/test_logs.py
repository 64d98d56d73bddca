"""Log records are cleaned: no public client address, no personal data (privacy.logs)."""

from __future__ import annotations

import logging
import subprocess
import sys

from tallystick.privacy.logs import clean, clean_record


def test_addresses_become_networks_and_personal_data_markers() -> None:
    text = "client 81.2.69.142 and 2a02:1234:5678:9abc::1 sent bob@example.com, +44 20 7946 0958"
    assert clean(text) == ("client 81.2.69.0/24 and 2a02:1234:5678::/48 sent [email], [phone]")
    assert clean("listening on 127.0.0.1:8000 and [::]:8000, 0.0.0.0") == (
        "listening on 127.0.0.1:8000 and [::]:8000, 0.0.0.0"
    )
    assert clean("loaded 12 segments in 0.25 s") == "loaded 12 segments in 0.25 s"


def test_a_record_is_cleaned_in_its_message_and_its_exception() -> None:
    try:
        raise ValueError("refused bob@example.com")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "from %s", ("81.2.69.142",), sys.exc_info()
        )
    clean_record(record)
    formatted = logging.Formatter().format(record)
    assert "81.2.69.0/24" in formatted
    assert "[email]" in formatted
    assert "81.2.69.142" not in formatted
    assert "bob@example.com" not in formatted


def test_install_cleans_every_logger_of_the_process() -> None:
    code = (
        "import logging; from tallystick.privacy.logs import install; install(); install(); "
        "logging.getLogger('uvicorn.error').warning('from %s: %s', '81.2.69.142', 'a@b.org')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "from 81.2.69.0/24: [email]"
