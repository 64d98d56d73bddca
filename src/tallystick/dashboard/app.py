"""The dashboard's ASGI app: server-rendered pages and their static assets.

Pages hold no numbers of their own: the server renders the layout and the controls (from the
query string, so a shared or reloaded URL shows the same view), and ``dashboard.js`` draws every
chart and table from the same HTTP API that ``/v1/...`` exposes. plotly.js is served from the
``plotly`` wheel, so the dashboard works with no internet access.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import importlib.resources
import threading
from typing import Final

import jinja2

from tallystick.collect.asgi import Receive, Scope, Send, respond
from tallystick.config import Settings
from tallystick.dashboard.pages import BY_PATH, PAGES, RANGES, Page, first, view_state
from tallystick.version import __version__

STATIC_PREFIX: Final = "/static/"
_TYPES: Final = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
#: plotly.js injects its styles, and draws images from data: and blob: URLs
_CSP: Final = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    b"base-uri 'none'; form-action 'self'"
)
_SECURITY: Final = [
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class Asset:
    """A static file held in memory; its gzip form is made on first demand, if it is smaller."""

    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.body = body
        self.content_type = content_type
        self.version = hashlib.sha256(body).hexdigest()[:12]
        self._gzipped: bytes | None = None
        self._packed = False
        self._lock = threading.Lock()

    @property
    def gzipped(self) -> bytes | None:
        with self._lock:
            if not self._packed:
                packed = gzip.compress(self.body, compresslevel=6, mtime=0)
                self._gzipped = packed if len(packed) < len(self.body) * 0.9 else None
                self._packed = True
            return self._gzipped


@functools.cache
def read_assets() -> dict[str, Asset]:
    """The static files (the package's ``static/`` and plotly.js from the plotly wheel), read
    once per process: they change only with the installed packages."""
    assets: dict[str, Asset] = {}
    static = importlib.resources.files("tallystick.dashboard") / "static"
    for item in static.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            assets[item.name] = Asset(item.read_bytes(), _TYPES[suffix])
    plotly = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    assets["plotly.min.js"] = Asset(plotly.read_bytes(), _TYPES[".js"])
    return assets


class Dashboard:
    """The dashboard pages (``/``, ``/funnel``, …), ``/static/*`` and ``/favicon.ico``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("tallystick.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    @property
    def assets(self) -> dict[str, Asset]:
        return read_assets()

    def asset_url(self, name: str) -> str:
        return f"{STATIC_PREFIX}{name}?v={self.assets[name].version}"

    def serves(self, path: str) -> bool:
        return path in BY_PATH or path.startswith(STATIC_PREFIX) or path == "/favicon.ico"

    def render(self, page: Page, query_string: str) -> str:
        state = view_state(page, query_string)
        template = self._env.get_template(f"{page.slug}.html")
        return template.render(
            page=page,
            pages=PAGES,
            state=state,
            first=lambda key, default="": first(state, key, default),
            asset=self.asset_url,
            version=__version__,
            ranges=RANGES,
            today=dt.datetime.now(dt.UTC).date().isoformat(),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method not in ("GET", "HEAD"):
            await respond(
                send,
                405,
                b"text/plain; charset=utf-8",
                b"The dashboard's pages are read with GET.\n",
                [(b"allow", b"GET, HEAD")],
                head=False,
            )
            return
        head = method == "HEAD"
        if path == "/favicon.ico":
            path = STATIC_PREFIX + "favicon.svg"
        if path.startswith(STATIC_PREFIX):
            await self._static(scope, send, path[len(STATIC_PREFIX) :], head)
            return
        html = self.render(BY_PATH[path], scope.get("query_string", b"").decode("latin-1"))
        await respond(
            send,
            200,
            b"text/html; charset=utf-8",
            html.encode(),
            [(b"cache-control", b"no-cache"), *_SECURITY],
            head=head,
        )

    async def _static(self, scope: Scope, send: Send, name: str, head: bool) -> None:
        asset = self.assets.get(name)
        if asset is None:
            await respond(
                send,
                404,
                b"text/plain; charset=utf-8",
                f"No such file: {STATIC_PREFIX}{name}\n".encode(),
                head=head,
            )
            return
        headers = dict(scope.get("headers") or ())
        etag = f'"{asset.version}"'.encode()
        versioned = f"v={asset.version}".encode() in scope.get("query_string", b"")
        cache = b"public, max-age=31536000, immutable" if versioned else b"no-cache"
        extra = [(b"etag", etag), (b"cache-control", cache), (b"vary", b"accept-encoding")]
        if headers.get(b"if-none-match") == etag:
            await respond(send, 304, asset.content_type, b"", extra, head=True)
            return
        body = asset.body
        if asset.gzipped is not None and b"gzip" in headers.get(b"accept-encoding", b""):
            body = asset.gzipped
            extra.append((b"content-encoding", b"gzip"))
        await respond(send, 200, asset.content_type, body, extra, head=head)
