"""The control-plane HTTP API: streams, data models, the configuration and its audit log under
``/v1/admin/...``, and the read-only catalog under ``/v1/catalog/...`` and ``/v1/audit``.

``app.ControlApi`` is the ASGI application the collector hands those paths to; ``access`` says who
may call what (read key, admin key, loopback), ``documents`` reads request bodies (JSON, and YAML
for whole configurations, with the line of each problem), ``views`` turns definitions into the
JSON the API answers, ``volume`` counts each stream's events in the lake and ``openapi`` describes
it all for ``/openapi.json``. See docs/http-api.md.
"""
