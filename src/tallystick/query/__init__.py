"""The query API: Tallystick's analyses over HTTP (``/v1/query/<analysis>``, ``/openapi.json``)."""
