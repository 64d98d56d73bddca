"""The dashboard's ASGI app: server-rendered pages and their static assets.

Pages hold no numbers of their own: the server renders the layout and the controls (from the
query string, so a shared or reloaded URL shows the same view), and ``dashboard.js`` draws every
chart and table from the same HTTP API that ``/v1/...`` exposes. plotly.js is served from the
``plotly`` wheel, so the dashboard works with no internet access.

When reads are keyed (docs/access.md), a page asked for without a valid session redirects to
``/signin``, which asks for a read (or admin) key; signing in sets the ``tally_session`` cookie
(HttpOnly, SameSite=Strict, Path=/, Secure over https) that the page's API calls then carry.
``POST /signout`` ends the session. Static files need no key: they hold no data.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import importlib.resources
import threading
import urllib.parse
from typing import TYPE_CHECKING, Final

import jinja2

from tallystick.collect.asgi import Receive, Scope, Send, respond
from tallystick.collect.body import ClientDisconnected, read_body
from tallystick.config import Settings
from tallystick.control.principal import principal_of
from tallystick.dashboard.pages import BY_PATH, PAGES, RANGES, Page, first, view_state
from tallystick.query.auth import SESSION_COOKIE, cookie
from tallystick.version import __version__

if TYPE_CHECKING:
    from tallystick.control.keys import Verifier

SIGN_IN_PATH: Final = "/signin"
SIGN_OUT_PATH: Final = "/signout"
SIGN_IN_MAX_BYTES: Final = 4096
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
        self.keys: Verifier | None = None
        """Opens and ends sessions (the collector's, from its start-up)."""
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
        return (
            path in BY_PATH
            or path.startswith(STATIC_PREFIX)
            or path in ("/favicon.ico", SIGN_IN_PATH, SIGN_OUT_PATH)
        )

    def is_page(self, path: str) -> bool:
        """Whether ``path`` is a page (which needs a session when reads are keyed)."""
        return path in BY_PATH

    async def to_sign_in(self, scope: Scope, send: Send) -> None:
        """Send a browser without a valid session to the sign-in page, and back here after."""
        here = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        target = (
            SIGN_IN_PATH
            + "?"
            + urllib.parse.urlencode({"next": here + ("?" + query if query else "")})
        )
        await respond(
            send,
            303,
            b"text/plain; charset=utf-8",
            b"Sign in to see this page.\n",
            [(b"location", target.encode()), (b"cache-control", b"no-store"), *_SECURITY],
            head=scope["method"] == "HEAD",
        )

    def render(self, page: Page, query_string: str, *, signed_in: bool = False) -> str:
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
            signed_in=signed_in,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path in (SIGN_IN_PATH, SIGN_OUT_PATH):
            await self._session(scope, receive, send)
            return
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
        signed_in = principal_of(scope).kind != "open"
        html = self.render(
            BY_PATH[path], scope.get("query_string", b"").decode("latin-1"), signed_in=signed_in
        )
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

    # -- sign-in ---------------------------------------------------------------------------------

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /signin`` (the form), ``POST /signin`` (a key → a session), ``POST /signout``."""
        path: str = scope["path"]
        method: str = scope["method"]
        allowed = b"GET, HEAD, POST" if path == SIGN_IN_PATH else b"POST"
        if method not in allowed.decode().split(", "):
            await respond(
                send,
                405,
                b"text/plain; charset=utf-8",
                f"Use {allowed.decode()} for {path}.\n".encode(),
                [(b"allow", allowed)],
            )
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = _local(query.get("next", ["/"])[0])
        if method in ("GET", "HEAD"):
            await self._sign_in_page(send, target, "", 200, head=method == "HEAD")
            return
        if not _same_origin(scope):
            await respond(
                send,
                403,
                b"text/plain; charset=utf-8",
                b"Sign in and out from this server's own pages.\n",
                list(_SECURITY),
            )
            return
        try:
            body = await read_body(receive, SIGN_IN_MAX_BYTES, None)
        except ClientDisconnected:
            return
        form = urllib.parse.parse_qs(body.decode("latin-1") if isinstance(body, bytes) else "")
        secure = scope.get("scheme") == "https"
        if path == SIGN_OUT_PATH:
            session = cookie(scope.get("headers") or ())
            if session is not None and self.keys is not None:
                self.keys.sign_out(session)
            await self._redirect(send, SIGN_IN_PATH, _cookie("", 0, secure))
            return
        target = _local(form.get("next", [target])[0])
        key = form.get("key", [""])[0].strip()
        if self.keys is None:
            await self._sign_in_page(send, target, "The server is starting. Try again.", 503)
            return
        opened = self.keys.sign_in(key.encode("latin-1", "replace")) if key else None
        if opened is None:
            why = (
                "Enter a read key."
                if not key
                else "That key was not accepted. Check it and try again: the dashboard needs a "
                "read or admin key (a write key only sends events)."
            )
            await self._sign_in_page(send, target, why, 401)
            return
        value, _ = opened
        max_age = int(self.settings.dashboard_session_hours * 3600)
        await self._redirect(send, target, _cookie(value, max_age, secure))

    async def _sign_in_page(
        self, send: Send, target: str, error: str, status: int, *, head: bool = False
    ) -> None:
        keyed = self.keys.keyed().read if self.keys is not None else bool(self.settings.read_key)
        html = self._env.get_template("signin.html").render(
            asset=self.asset_url, version=__version__, target=target, error=error, keyed=keyed
        )
        await respond(
            send,
            status,
            b"text/html; charset=utf-8",
            html.encode(),
            [(b"cache-control", b"no-store"), *_SECURITY],
            head=head,
        )

    async def _redirect(self, send: Send, target: str, set_cookie: bytes) -> None:
        await respond(
            send,
            303,
            b"text/plain; charset=utf-8",
            b"",
            [
                (b"location", target.encode()),
                (b"set-cookie", set_cookie),
                (b"cache-control", b"no-store"),
                *_SECURITY,
            ],
        )


def _same_origin(scope: Scope) -> bool:
    """Whether a form was posted from this server's own page (another site's page may not sign
    a visitor in or out): the browser's ``Sec-Fetch-Site`` says ``same-origin`` (or ``none``),
    or, without it, ``Origin`` names the same host as ``Host``. The pages' ``no-referrer``
    policy makes browsers send ``Origin: null`` for their own forms."""
    headers: dict[bytes, bytes] = dict(scope.get("headers") or ())
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        return site in (b"same-origin", b"none")
    origin = headers.get(b"origin")
    if origin is None or origin == b"null":
        return True  # not a browser that says where a form comes from
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return urllib.parse.urlsplit(origin.decode("latin-1")).netloc.lower() == host


def _local(target: str) -> str:
    """A path on this server to go back to after signing in (anything else: ``/``)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc:
        return "/"
    return target


def _cookie(value: str, max_age: int, secure: bool) -> bytes:
    """The session cookie's ``Set-Cookie`` (``max_age`` 0 clears it)."""
    parts = [
        f"{SESSION_COOKIE}={value}",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        f"Max-Age={max_age}",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode()
