"""Enrichment: what Tallystick adds to an event beyond what the client sent (see
docs/enrichment.md). The collector derives geo data from the client's address before it is
discarded (``geo``, ``client_ip``); the loader parses user agents, flags bots, corrects clock skew
and infers sessions while it moves the spool into the lake (``agents``, ``sessions``,
``pipeline``)."""
