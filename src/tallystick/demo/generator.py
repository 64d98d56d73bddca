"""Synthetic events of the demo product: a university research data and compute portal.

Pure and deterministic: every random choice comes from one seeded ``random.Random``; there is no
global state and no I/O (only ``end=None`` reads the clock, to end the history now).

The model, day by day over the window:

* **Sites.** Each institution is an ``app.instance`` with its own size, growth curve, locale and
  time zone. Some are live from the start (with existing users), others adopt the portal later.
* **Users** sign up over time (``user.signup``); sign-ups accelerate within each site. Each user
  has an activity level — power, regular, occasional or tourist — that sets how often they come
  back and how long before they churn, so retention decays realistically. New users are more
  active in their first two weeks.
* **Seasonality.** Quieter Fridays, much quieter weekends, a summer lull in August and dips on
  public holidays (Christmas to New Year, Easter, 1 May, Ascension, Whit Monday).
* **Sessions** (``session.start`` … ``session.end``, ``session.seq`` from 1) in the browser
  (``tallystick-js``, with ``page``), plus batch jobs from the Python client (``tallystick-python``,
  ``client.platform = "server"``) for users who script their workflows.
* **Sign-in dialog**, four steps (``FUNNEL``) with drop-off at each step and log-normal step
  latencies (``data.duration_ms``) with a slow tail. Safari users lose more at the code step.
* **The A/B experiment** ``signin-dialog`` runs from midnight UTC of day
  ``DemoSpec.experiment_start`` (``tally demo`` starts it then). Each browser is assigned ``a``
  or ``b`` by the flags engine on the demo's ruleset (``demo/flags.json``: 50/50, hashed on
  ``user.anonymous_id``; ``tallystick.demo.experiment``); the variant is in ``experiments`` on
  all its web events from then on, and in ``data.variant`` on the dialog's events. The first
  time a browser is shown the dialog, an ``experiment.exposure`` event is logged in that
  session, built and deduplicated by the SDK's own code (``tallystick.flags.exposures``, as
  ``Tracker.variant`` does). ``b`` pre-fills the e-mail: it completes about 10 points more
  often and people retry more after a failure; since a failed sign-in mostly ends the session
  on its first page, ``b`` lowers the **bounce rate** (sessions with one page view) of the
  exposed browsers by about a third (the experiment's primary metric).
* **Errors**: ``error.shown`` on about 1–3 % of page views, with an incident week (release
  ``4.2.0``, fixed by ``4.2.1``) where errors, time-outs, slow pages and failed workflows spike.
* **Anonymous traffic**: visitors who never sign in, a search-engine crawler (Googlebot) and a
  synthetic uptime monitor (HeadlessChrome) that opens the sign-in dialog (neither sends
  ``session.end``). ``is_bot()`` tells them apart.

Events are yielded day by day; within a session they are in order. Neither ``client_ts`` nor
``sent_ts`` passes the end of the window (or *now*, when ``end`` is not given): a session that
would is cut short.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final

from tallystick.demo import experiment as demo_experiment
from tallystick.flags.exposures import EXPOSURE_EVENT, Exposure, ExposureLogger

APP_ID: Final = "research-portal"
ENVIRONMENT: Final = "production"
EXPERIMENT: Final = "signin-dialog"
VARIANTS: Final = ("a", "b")

# Event names.
SESSION_START: Final = "session.start"
SESSION_END: Final = "session.end"
PAGE_VIEW: Final = "page.view"
USER_SIGNUP: Final = "user.signup"
USER_LOGIN: Final = "user.login"
SIGNIN_OPEN: Final = "signin.open"
SIGNIN_EMAIL_ENTERED: Final = "signin.email_entered"
SIGNIN_CODE_VERIFIED: Final = "signin.code_verified"
SIGNIN_COMPLETED: Final = "signin.completed"
PROJECT_COMMIT: Final = "project.commit"
DATASET_CREATE: Final = "dataset.create"
NOTEBOOK_SESSION_START: Final = "notebook.session_start"
WORKFLOW_RUN: Final = "workflow.run"
SEARCH_QUERY: Final = "search.query"
ERROR_SHOWN: Final = "error.shown"
EXPERIMENT_EXPOSURE: Final = EXPOSURE_EVENT

FUNNEL: Final = (SIGNIN_OPEN, SIGNIN_EMAIL_ENTERED, SIGNIN_CODE_VERIFIED, SIGNIN_COMPLETED)
CORE_ACTIONS: Final = (
    USER_LOGIN,
    PROJECT_COMMIT,
    DATASET_CREATE,
    NOTEBOOK_SESSION_START,
    WORKFLOW_RUN,
    SEARCH_QUERY,
)
EVENT_NAMES: Final = (
    SESSION_START,
    SESSION_END,
    PAGE_VIEW,
    USER_SIGNUP,
    *FUNNEL,
    *CORE_ACTIONS,
    ERROR_SHOWN,
    EXPERIMENT_EXPOSURE,
)
# Fields in ``data`` per event (documentation; every value is a scalar or a list of scalars).
DATA_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    SESSION_START: ("entry",),
    SESSION_END: ("duration_s", "pageviews", "events"),
    PAGE_VIEW: ("template", "load_ms"),
    USER_SIGNUP: ("method", "role", "department"),
    USER_LOGIN: ("method",),
    SIGNIN_OPEN: ("variant", "duration_ms", "trigger"),
    SIGNIN_EMAIL_ENTERED: ("variant", "duration_ms"),
    SIGNIN_CODE_VERIFIED: ("variant", "duration_ms", "attempts"),
    SIGNIN_COMPLETED: ("variant", "duration_ms"),
    PROJECT_COMMIT: ("project_id", "files", "lines_added", "lines_removed"),
    DATASET_CREATE: ("dataset_id", "format", "size_mb", "tags"),
    NOTEBOOK_SESSION_START: ("kernel", "cores", "gpu"),
    WORKFLOW_RUN: ("workflow_id", "engine", "steps", "status", "duration_ms"),
    SEARCH_QUERY: ("scope", "query_length", "results"),
    ERROR_SHOWN: ("code", "screen"),
    EXPERIMENT_EXPOSURE: (
        "experiment",
        "variation",
        "variation_index",
        "flag",
        "rule",
        "hash_attribute",
        "unit",
        "bucket",
    ),
}
ERROR_CODES: Final = ("404", "403", "500", "timeout")

JS_LIBRARY: Final = "tallystick-js"
PY_LIBRARY: Final = "tallystick-python"
BOT_MARKERS: Final = ("bot", "headless", "crawler", "spider")


@dataclass(frozen=True, slots=True)
class Site:
    """One institution running the portal (its ``app.instance``)."""

    slug: str
    locale: str
    utc_offset: int
    """Hours ahead of UTC (standard time; the demo ignores daylight saving)."""
    weight: float
    """Relative size: the share of users it gets."""
    launch: float
    """When it adopts the portal, as a fraction of the window (0: live from the start)."""
    growth: float
    """How much sign-ups accelerate after launch (1: steady, 2: linearly rising, …)."""

    @property
    def host(self) -> str:
        return f"https://{self.slug}.research-portal.eu"


SITE_CATALOG: Final[tuple[Site, ...]] = (
    Site("uni-heidelberg", "de-DE", 1, 1.00, 0.00, 1.4),
    Site("tu-delft", "nl-NL", 1, 0.85, 0.00, 1.6),
    Site("ucl-london", "en-GB", 0, 0.80, 0.00, 1.3),
    Site("eth-zurich", "de-CH", 1, 0.70, 0.00, 1.8),
    Site("sorbonne", "fr-FR", 1, 0.55, 0.00, 2.0),
    Site("ku-leuven", "nl-BE", 1, 0.50, 0.12, 2.2),
    Site("tu-muenchen", "de-DE", 1, 0.65, 0.25, 2.6),
    Site("uni-wien", "de-AT", 1, 0.35, 0.35, 2.0),
    Site("kth-stockholm", "sv-SE", 1, 0.30, 0.45, 2.4),
    Site("uni-helsinki", "fi-FI", 2, 0.25, 0.55, 2.2),
    Site("uni-bologna", "it-IT", 1, 0.40, 0.65, 3.0),
    Site("tcd-dublin", "en-IE", 0, 0.20, 0.78, 2.0),
    Site("epfl", "fr-CH", 1, 0.45, 0.30, 2.4),
    Site("uni-oslo", "nb-NO", 1, 0.25, 0.50, 2.0),
    Site("uc3m-madrid", "es-ES", 1, 0.30, 0.60, 2.6),
    Site("uni-lisboa", "pt-PT", 0, 0.20, 0.70, 2.2),
)


def site_list(count: int) -> tuple[Site, ...]:
    """The first ``count`` sites: the catalog, then generic institutes that join late."""
    sites = list(SITE_CATALOG[:count])
    for i in range(len(sites), count):
        sites.append(Site(f"institute-{i + 1:02d}", "en-GB", 0, 0.2, 0.1 + 0.8 * (i % 7) / 7, 2.0))
    return tuple(sites)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSpec:
    """The parameters of one demo history and the dates derived from them."""

    end: dt.date
    users: int = 1500
    days: int = 183
    seed: int = 7
    sites: int = 12

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users must be >= 0, got {self.users}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.sites < 1:
            raise ValueError(f"sites must be >= 1, got {self.sites}")

    @property
    def start(self) -> dt.date:
        """First day of the window (the window is ``start`` … ``end``, both included)."""
        return self.end - dt.timedelta(days=self.days - 1)

    @property
    def site_list(self) -> tuple[Site, ...]:
        return site_list(self.sites)

    @property
    def incident(self) -> tuple[int, int]:
        """Day indexes ``[first, last)`` of the incident week (release 4.2.0 until 4.2.1)."""
        first = int(self.days * 0.58)
        return first, min(self.days, first + 7)

    @property
    def experiment_start(self) -> int:
        """Day index from which the ``signin-dialog`` experiment runs."""
        return int(self.days * 0.2)

    @property
    def releases(self) -> tuple[tuple[int, str], ...]:
        """``(first day index, app.version)`` of each release."""
        first, last = self.incident
        return (
            (0, "4.0.3"),
            (int(self.days * 0.18), "4.1.0"),
            (int(self.days * 0.37), "4.1.1"),
            (first, "4.2.0"),
            (last, "4.2.1"),
            (max(last + 1, int(self.days * 0.82)), "4.3.0"),
        )


# --- Tables --------------------------------------------------------------------------------------

_DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000
_EPOCH: Final = dt.date(1970, 1, 1)

_WEEKDAY: Final = (1.0, 1.03, 1.0, 0.96, 0.82, 0.28, 0.22)
_LOCAL_HOUR_WEIGHTS: Final = (
    0.2,
    0.1,
    0.05,
    0.05,
    0.05,
    0.1,
    0.3,
    0.9,
    2.2,
    3.4,
    3.8,
    3.6,
    2.8,
    3.2,
    3.6,
    3.4,
    3.0,
    2.3,
    1.5,
    1.1,
    1.0,
    0.9,
    0.7,
    0.4,
)

_BROWSERS: Final = (
    (
        "chrome",
        0.30,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    ),
    (
        "chrome",
        0.13,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    ),
    (
        "chrome",
        0.08,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/129.0.0.0 Safari/537.36",
    ),
    (
        "firefox",
        0.12,
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    ),
    (
        "firefox",
        0.08,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    ),
    (
        "safari",
        0.17,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    ),
    (
        "edge",
        0.12,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    ),
)
_GOOGLEBOT: Final = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
_HEADLESS: Final = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/130.0.0.0 Safari/537.36"
)
_PY_UA: Final = "tallystick-python/{} CPython/3.12.7 Linux-6.8.0-x86_64"

# name, share of new users, share of existing users, weekday visit probability,
# mean lifetime in days, mean actions per session, share scripting with Python
_SEGMENTS: Final = (
    ("power", 0.10, 0.22, 0.50, 1000.0, 12.0, 0.6),
    ("regular", 0.30, 0.43, 0.20, 220.0, 7.0, 0.3),
    ("occasional", 0.35, 0.30, 0.065, 100.0, 4.0, 0.1),
    ("tourist", 0.25, 0.05, 0.05, 6.0, 3.0, 0.0),
)
_EXISTING_SHARE: Final = 0.35

_ROLES: Final = (
    ("phd_student", 0.35),
    ("postdoc", 0.22),
    ("professor", 0.08),
    ("staff", 0.15),
    ("student", 0.2),
)
_DEPARTMENTS: Final = (
    "biology",
    "physics",
    "chemistry",
    "computer_science",
    "medicine",
    "geosciences",
    "economics",
    "linguistics",
    "mathematics",
)
_TAGS: Final = (
    "genomics",
    "imaging",
    "climate",
    "survey",
    "simulation",
    "proteomics",
    "time_series",
    "text",
    "geospatial",
    "sensor",
)
_FORMATS: Final = ("csv", "parquet", "hdf5", "netcdf", "tiff", "json")
_ENGINES: Final = ("snakemake", "nextflow", "cwl", "airflow")
_KERNELS: Final = (("python3", 0.7), ("ir", 0.18), ("julia", 0.12))
_DOC_PAGES: Final = (
    "getting-started",
    "workflows",
    "storage-quotas",
    "api",
    "gpu-nodes",
    "data-policy",
)
_REFERRERS: Final = (
    (None, "direct", 0.5),
    ("https://www.google.com/", "search", 0.2),
    ("https://scholar.google.com/", "search", 0.06),
    ("https://github.com/", "link", 0.06),
    ("intranet", "link", 0.12),
    ("mail", "email", 0.06),
)
# section, weight, probability of its core action after the page view
_SECTIONS: Final = (
    ("projects", 0.24, 0.55),
    ("datasets", 0.16, 0.3),
    ("notebooks", 0.13, 0.6),
    ("workflows", 0.16, 0.75),
    ("search", 0.13, 1.0),
    ("docs", 0.1, 0.0),
    ("settings", 0.04, 0.0),
    ("home", 0.04, 0.0),
)
_PUBLIC_PAGES: Final = (
    "/",
    "/about",
    "/docs/getting-started",
    "/docs/data-policy",
    "/datasets/public",
    "/status",
)

# Sign-in dialog: conversion per step and median latency in ms, by variant.
_STEP_RATE: Final = {"a": (0.80, 0.80, 0.965), "b": (0.88, 0.87, 0.965)}
_STEP_MEDIAN_MS: Final = {
    "a": (180.0, 7500.0, 32000.0, 380.0),
    "b": (190.0, 4200.0, 30000.0, 380.0),  # the e-mail is pre-filled from the institution's SSO
}
_STEP_SIGMA: Final = (0.45, 0.6, 0.7, 0.45)
_GIVE_UP: Final = {"a": 0.55, "b": 0.35}
"""Probability of not trying again after a failed sign-in, by variant."""
_STAY_AFTER_FAILURE: Final = 0.2
"""Probability that someone who could not sign in reads the docs rather than leaving: a failed
sign-in mostly ends the session on its first page (a bounce)."""
_LOGIN_EXPIRED: Final = 0.4
"""Probability that a returning user's login has expired (always after 14 days away)."""

_TWO: Final = tuple(f"{i:02d}" for i in range(60))
_MILLI: Final = tuple(f".{i:03d}Z" for i in range(1000))
_VARIANT_NIBBLE: Final = {f"{i:x}": f"{i & 3 | 8:x}" for i in range(16)}
_NORMAL_BITS: Final = 13
_NORMAL: Final = tuple(
    NormalDist().inv_cdf((i + 0.5) / (1 << _NORMAL_BITS)) for i in range(1 << _NORMAL_BITS)
)
"""Standard normal quantiles: a random index is a (finely binned) normal draw, much faster."""

_ERROR_RATE: Final = 0.017
_INCIDENT_ERROR_FACTOR: Final = 4.5


def _easter(year: int) -> dt.date:
    """Easter Sunday (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    wd = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * wd) // 451
    month, day = divmod(h + wd - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def day_factor(day: dt.date) -> float:
    """Relative activity on ``day``: weekly rhythm, summer lull and public holidays."""
    factor = _WEEKDAY[day.weekday()]
    md = (day.month, day.day)
    if md >= (12, 22) or md <= (1, 1):
        return factor * 0.18
    if md == (5, 1):
        return factor * 0.35
    if day.month == 8 and day.day <= 25:
        factor *= 0.62
    offset = (day - _easter(day.year)).days
    if offset in (-2, 0, 1):  # Good Friday, Easter, Easter Monday
        return factor * 0.3
    if offset in (39, 50):  # Ascension, Whit Monday
        return factor * 0.45
    return factor


def _cumulative(weights: Iterable[float]) -> list[float]:
    out: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        out.append(total)
    return [x / total for x in out]


# --- Generator -----------------------------------------------------------------------------------


class _User:
    __slots__ = (
        "actions",
        "anon",
        "browser",
        "churn",
        "department",
        "last_day",
        "locale",
        "p",
        "projects",
        "python",
        "role",
        "signup",
        "site",
        "ua",
        "uid",
        "variant",
    )

    def __init__(self) -> None:
        self.uid = ""
        self.anon = ""
        self.site = 0
        self.signup = -1
        self.churn = 0
        self.p = 0.0
        self.actions = 0.0
        self.python = False
        self.browser = ""
        self.ua = ""
        self.locale = ""
        self.variant = "a"
        self.role = ""
        self.department = ""
        self.projects: list[str] = []
        self.last_day = -1


class _Session:
    """Builds the events of one session, in order, advancing its clock."""

    __slots__ = (
        "app",
        "client",
        "cut",
        "events",
        "experiments",
        "g",
        "locale",
        "logged_in",
        "page",
        "pv",
        "ref",
        "seq",
        "sid",
        "start",
        "t",
        "ua",
        "url",
        "user_in",
        "user_out",
    )

    def __init__(
        self,
        g: _Gen,
        *,
        site: str,
        t: int,
        client: tuple[str, str, str],
        ua: str,
        locale: str | None,
        uid: str | None,
        anon: str | None,
        logged_in: bool,
        page: bool,
        experiments: str | None,
        version: str,
    ) -> None:
        self.g = g
        self.events: list[dict[str, Any]] = []
        self.sid = g.hexid("s-", 48)
        self.seq = 0
        self.cut = -1
        self.start = t
        self.t = t
        self.app = {"id": APP_ID, "version": version, "environment": ENVIRONMENT, "instance": site}
        library, library_version, platform = client
        self.client = {"library": library, "library_version": library_version, "platform": platform}
        # Before sign-in only the browser's id; after it the user id too (identity stitching).
        self.user_out: dict[str, Any] = {"anonymous_id": anon, "is_logged_in": False}
        self.user_in: dict[str, Any] = {"id": uid, "is_logged_in": True}
        if anon is not None:
            self.user_in = {"id": uid, "anonymous_id": anon, "is_logged_in": True}
        self.ua = ua
        self.locale = locale
        self.logged_in = logged_in
        self.page = page
        self.experiments = experiments
        self.pv = ""
        self.url = ""
        self.ref: str | None = None

    def emit(
        self, name: str, data: dict[str, Any], experiments: dict[str, str] | None = None
    ) -> None:
        g = self.g
        seq = self.seq = self.seq + 1
        t = self.t
        r = g.random()
        delay = 40 + int(r * 2500)
        if r < 0.004:  # a laptop that went offline before flushing its queue
            delay += int(r * 300_000_000)
        if t + delay >= g.cutoff_ms and self.cut < 0:
            self.cut = seq - 1
        ts = g.ts
        event: dict[str, Any] = {
            "event_id": g.uuid(),
            "name": name,
            "client_ts": ts(t),
            "sent_ts": ts(t + delay),
            "app": self.app.copy(),
            "client": self.client.copy(),
            "user": (self.user_in if self.logged_in else self.user_out).copy(),
            "session": {"id": self.sid, "seq": seq},
        }
        if self.page:
            if self.ref is None:
                event["page"] = {"pageview_id": self.pv, "url": self.url}
            else:
                event["page"] = {"pageview_id": self.pv, "url": self.url, "referrer": self.ref}
        event["agent"] = {"user_agent": self.ua}
        if self.locale is not None:
            event["locale"] = self.locale
        if experiments:
            event["experiments"] = experiments
        elif self.experiments is not None:
            event["experiments"] = {EXPERIMENT: self.experiments}
        event["data"] = data
        self.events.append(event)

    def navigate(self, url: str, template: str, load_ms: int) -> None:
        """A page load: a new page view id, the previous page becomes the referrer."""
        self.ref = self.url
        self.url = url
        self.pv = self.g.hexid("pv-", 40)
        self.t += load_ms
        self.emit(PAGE_VIEW, {"template": template, "load_ms": load_ms})

    def wait(self, median_ms: float, sigma: float = 0.8) -> None:
        self.t += self.g.lognorm(median_ms, sigma)


class _Gen:
    def __init__(self, spec: DemoSpec, cutoff_ms: int) -> None:
        self.spec = spec
        self.rng = rng = random.Random(spec.seed)
        self.random: Callable[[], float] = rng.random
        self.getrandbits: Callable[[int], int] = rng.getrandbits
        self.cutoff_ms = cutoff_ms
        self.sites = spec.site_list
        self.site_cum = _cumulative(s.weight for s in self.sites)
        self.launch = [int(s.launch * spec.days) for s in self.sites]
        self.start_ms = (spec.start - _EPOCH).days * _DAY_MS
        self.day_prefix: dict[int, str] = {}
        self.hour_cum = _cumulative(_LOCAL_HOUR_WEIGHTS)
        self.browser_cum = _cumulative(b[1] for b in _BROWSERS)
        self.section_cum = _cumulative(s[1] for s in _SECTIONS)
        self.referrer_cum = _cumulative(r[2] for r in _REFERRERS)
        self.role_cum = _cumulative(r[1] for r in _ROLES)
        self.kernel_cum = _cumulative(k[1] for k in _KERNELS)
        self.incident = spec.incident
        self.versions = self._by_day(spec.releases)
        half = spec.days // 2
        self.js_versions = self._by_day(((0, "1.4.2"), (half, "1.5.0")))
        self.py_versions = self._by_day(((0, "0.9.1"), (int(spec.days * 0.7), "0.10.0")))
        # The experiment runs from midnight UTC of its first day (``tally demo`` starts it then).
        self.experiment_start_ms = self.start_ms + spec.experiment_start * _DAY_MS
        self.flags = demo_experiment.compiled()
        # The SDK's own exposure logging (what ``Tracker.flag``/``variant`` use): the first time a
        # browser is shown the dialog, its exposure goes into the session it is shown in.
        self.exposures = ExposureLogger(self._log_exposure)
        self.showing: _Session | None = None
        self.users = self._make_users()
        self.visitors: list[tuple[str, int]] = []  # returning anonymous visitors

    # -- helpers --

    def _by_day(self, changes: Sequence[tuple[int, str]]) -> list[str]:
        out = []
        current = changes[0][1]
        pending = sorted(changes)
        j = 0
        for d in range(self.spec.days):
            while j < len(pending) and pending[j][0] <= d:
                current = pending[j][1]
                j += 1
            out.append(current)
        return out

    def uuid(self) -> str:
        """Same string as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, faster."""
        h = self.getrandbits(128).to_bytes(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_NIBBLE[h[16]]}{h[17:20]}-{h[20:]}"

    def hexid(self, prefix: str, bits: int) -> str:
        return f"{prefix}{self.getrandbits(bits):0{bits // 4}x}"

    def ts(self, ms: int) -> str:
        """RFC 3339 UTC with milliseconds (table look-ups: format specs are slow)."""
        day = ms // _DAY_MS
        prefix = self.day_prefix.get(day)
        if prefix is None:
            prefix = self.day_prefix[day] = f"{_EPOCH + dt.timedelta(days=day)}T"
        secs = ms // 1000
        two = _TWO
        return (
            f"{prefix}{two[secs // 3600 % 24]}:{two[secs // 60 % 60]}:{two[secs % 60]}"
            f"{_MILLI[ms % 1000]}"
        )

    def pick(self, cum: list[float]) -> int:
        return min(bisect.bisect(cum, self.random()), len(cum) - 1)

    def lognorm(self, median: float, sigma: float, tail: float = 0.0) -> int:
        """Log-normal around ``median``; with probability ``tail`` 3–12 times slower."""
        value = median * math.exp(sigma * _NORMAL[self.getrandbits(_NORMAL_BITS)])
        if tail and self.random() < tail:
            value *= 3.0 + self.random() * 9.0
        return max(1, int(value))

    def geometric(self, mean: float) -> int:
        """At least 1, mean about ``mean``."""
        if mean <= 1.0:
            return 1
        return 1 + int(math.log(1.0 - self.random()) / math.log(1.0 - 1.0 / mean))

    def poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 30:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, prod = math.exp(-mean), 0, self.random()
        while prod > limit:
            k += 1
            prod *= self.random()
        return k

    def session_start_ms(self, day: int, site: Site) -> int:
        hour = self.pick(self.hour_cum)
        t = self.start_ms + day * _DAY_MS + (hour - site.utc_offset) * _HOUR_MS
        return max(self.start_ms, t + int(self.random() * _HOUR_MS))

    def in_incident(self, day: int) -> bool:
        return self.incident[0] <= day < self.incident[1]

    def running(self, t: int) -> bool:
        """Whether the ``signin-dialog`` experiment runs at ``t`` (ms since the epoch)."""
        return t >= self.experiment_start_ms

    def assign(self, anon: str) -> str:
        """The browser's variant: the ``signin-dialog`` flag of the demo's ruleset, evaluated
        by the flags engine for its ``anonymous_id`` (deterministic; logs nothing)."""
        e = self.flags.evaluate(demo_experiment.FLAG, {"anonymous_id": anon}, VARIANTS[0])
        return str(e.value)

    def show_dialog(self, s: _Session, anon: str) -> None:
        """The sign-in dialog is shown: the app evaluates the flag, and the first time in the
        experiment the browser's exposure is logged in the session (deduplicated as the SDK
        does). Only in a session that started while the experiment runs."""
        if s.experiments is None:
            return
        e = self.flags.evaluate(demo_experiment.FLAG, {"anonymous_id": anon}, VARIANTS[0])
        self.showing = s
        try:
            self.exposures(e)
        finally:
            self.showing = None

    def _log_exposure(self, exposure: Exposure) -> None:
        s = self.showing
        assert s is not None, "an exposure outside a session"
        s.emit(exposure.name, dict(exposure.data), exposure.experiments)

    # -- population --

    def _make_users(self) -> list[_User]:
        rng, days = self.rng, self.spec.days
        new_cum = _cumulative(s[1] for s in _SEGMENTS)
        old_cum = _cumulative(s[2] for s in _SEGMENTS)
        users = []
        for i in range(self.spec.users):
            u = _User()
            u.uid = f"u-{i + 1:05d}"
            u.anon = self.hexid("a-", 40)
            u.site = self.pick(self.site_cum)
            site = self.sites[u.site]
            launch = self.launch[u.site]
            existing = launch == 0 and self.random() < _EXISTING_SHARE
            if existing:
                u.signup = -1
                segment = _SEGMENTS[self.pick(old_cum)]
            else:
                span = days - launch
                u.signup = launch + int(span * self.random() ** (1.0 / site.growth))
                segment = _SEGMENTS[self.pick(new_cum)]
            _, _, _, u.p, life, u.actions, python_share = segment
            u.churn = max(u.signup, 0) + 1 + int(rng.expovariate(1.0 / life))
            u.python = self.random() < python_share
            u.browser, _, u.ua = _BROWSERS[self.pick(self.browser_cum)]
            roll = self.random()
            u.locale = (
                site.locale
                if roll < 0.7
                else "en-GB"
                if roll < 0.9
                else "en-US"
                if roll < 0.96
                else rng.choice(("de-DE", "fr-FR", "es-ES"))
            )
            u.variant = self.assign(u.anon)
            u.role = _ROLES[self.pick(self.role_cum)][0]
            u.department = rng.choice(_DEPARTMENTS)
            u.projects = [f"p-{rng.randrange(1, 100_000):05d}" for _ in range(1 + rng.randrange(3))]
            users.append(u)
        return users

    # -- the days --

    def run(self) -> Iterator[dict[str, Any]]:
        spec = self.spec
        for day in range(spec.days):
            date = spec.start + dt.timedelta(days=day)
            factor = day_factor(date)
            for u in self.users:
                if day < u.signup or day >= u.churn:
                    continue
                if day == u.signup:
                    yield from self.web_session(u, day, signup=True)
                    continue
                p = u.p * factor
                if u.signup >= 0 and day - u.signup < 14:
                    p *= 1.7
                if self.random() >= p:
                    continue
                yield from self.web_session(u, day)
                if u.p > 0.3 and self.random() < 0.2:
                    yield from self.web_session(u, day)
                if u.python and self.random() < 0.5:
                    yield from self.python_session(u, day)
            growth = 0.6 + 0.8 * day / spec.days
            for _ in range(self.poisson(spec.users * 0.025 * factor * growth)):
                yield from self.visitor_session(day)
            if self.random() < 0.8:
                yield from self.crawler_session(day)
            for hour in (2, 8, 14, 20):
                yield from self.monitor_session(day, hour)

    def finish(self, s: _Session) -> list[dict[str, Any]]:
        """The session's events up to the cutoff (a session that crosses it is cut short)."""
        return s.events if s.cut < 0 else s.events[: s.cut]

    def land(
        self,
        s: _Session,
        site: Site,
        path: str,
        template: str,
        load_ms: int,
        *,
        direct: bool = False,
    ) -> None:
        """``session.start`` and the first page view, on the page the visitor came in on."""
        ref: str | None = None
        kind = "direct"
        if not direct:
            ref, kind, _ = _REFERRERS[self.pick(self.referrer_cum)]
            if ref == "intranet":
                ref = f"https://intranet.{site.slug}.example/research-it"
            elif ref == "mail":
                ref = None
        s.url = f"{site.host}{path}"
        s.pv = self.hexid("pv-", 40)
        s.ref = ref
        s.emit(SESSION_START, {"entry": kind})
        s.t += load_ms
        s.emit(PAGE_VIEW, {"template": template, "load_ms": load_ms})

    def load_ms(self, day: int, browser: str) -> int:
        median = 420.0 if browser != "firefox" else 480.0
        if self.in_incident(day):
            median *= 2.4
        return self.lognorm(median, 0.55, tail=0.03)

    def web_session(self, u: _User, day: int, *, signup: bool = False) -> list[dict[str, Any]]:
        site = self.sites[u.site]
        t = self.session_start_ms(day, site)
        variant = u.variant if self.running(t) else VARIANTS[0]
        s = _Session(
            self,
            site=site.slug,
            t=t,
            client=(JS_LIBRARY, self.js_versions[day], "web"),
            ua=u.ua,
            locale=u.locale,
            uid=u.uid,
            anon=u.anon,
            logged_in=False,
            page=True,
            experiments=variant if self.running(t) else None,
            version=self.versions[day],
        )
        self.land(s, site, "/", "home", self.load_ms(day, u.browser))
        if signup:
            s.wait(25000)
            s.navigate(f"{site.host}/signup", "signup", self.load_ms(day, u.browser))
            s.wait(60000, 0.6)
            s.logged_in = True
            s.emit(
                USER_SIGNUP,
                {
                    "method": "sso" if self.random() < 0.6 else "email",
                    "role": u.role,
                    "department": u.department,
                },
            )
        elif u.last_day < 0 or day - u.last_day > 14 or self.random() < _LOGIN_EXPIRED:
            # The login has expired: sign in through the dialog (one retry at most).
            s.wait(3000)
            for _attempt in range(2):
                if self.signin(s, variant, u.browser, day):
                    break
                if self.random() < _GIVE_UP[variant]:
                    break
                s.wait(20000)
            if not s.logged_in:
                if self.random() < _STAY_AFTER_FAILURE:
                    s.wait(15000)
                    s.navigate(
                        f"{site.host}/docs/getting-started", "docs", self.load_ms(day, u.browser)
                    )
                return self.end(s, day)
            s.emit(USER_LOGIN, {"method": "email_code"})
        else:
            s.logged_in = True
        u.last_day = day
        for _ in range(self.geometric(u.actions)):
            s.wait(35000, 1.0)
            self.action(s, u, day, site)
        return self.end(s, day)

    def end(self, s: _Session, day: int) -> list[dict[str, Any]]:
        s.wait(20000)
        views = sum(1 for e in s.events if e["name"] == PAGE_VIEW)
        duration = (s.t - s.start) // 1000
        s.emit(SESSION_END, {"duration_s": duration, "pageviews": views, "events": s.seq + 1})
        return self.finish(s)

    def signin(self, s: _Session, variant: str, browser: str, day: int) -> bool:
        """One pass through the four-step dialog; whether it completed."""
        rates = _STEP_RATE[variant]
        medians = _STEP_MEDIAN_MS[variant]
        slow = 2.0 if self.in_incident(day) else 1.0
        self.show_dialog(s, s.user_out["anonymous_id"])
        for step, name in enumerate(FUNNEL):
            if step:
                rate = rates[step - 1]
                if step == 2 and browser == "safari":
                    rate *= 0.94  # the code e-mail link opens in another tab more often
                if self.random() >= rate:
                    return False
            latency = self.lognorm(
                medians[step] * (slow if step in (0, 3) else 1.0), _STEP_SIGMA[step], tail=0.04
            )
            s.t += latency
            data: dict[str, Any] = {"variant": variant, "duration_ms": latency}
            if step == 0:
                data["trigger"] = "header" if self.random() < 0.7 else "redirect"
            elif step == 2:
                data["attempts"] = 1 if self.random() < 0.85 else 2 + self.getrandbits(1)
            if step == 3:
                s.logged_in = True
            s.emit(name, data)
        return True

    def action(self, s: _Session, u: _User, day: int, site: Site) -> None:
        """Open a section of the portal and, often, do its core action."""
        section, _, p_action = _SECTIONS[self.pick(self.section_cum)]
        rng = self.rng
        project = rng.choice(u.projects)
        if section == "projects":
            path = f"/projects/{project}"
        elif section == "docs":
            path = f"/docs/{rng.choice(_DOC_PAGES)}"
        elif section == "home":
            path = "/"
        else:
            path = f"/{section}"
        s.navigate(f"{site.host}{path}", section, self.load_ms(day, u.browser))
        incident = self.in_incident(day)
        rate = _ERROR_RATE * (_INCIDENT_ERROR_FACTOR if incident else 1.0)
        if self.random() < rate:
            s.wait(800, 0.6)
            s.emit(ERROR_SHOWN, {"code": self.error_code(incident), "screen": section})
            return
        if self.random() >= p_action:
            return
        s.wait(20000, 0.9)
        if section == "projects":
            self.commit(s, project)
        elif section == "datasets":
            self.dataset(s)
        elif section == "notebooks":
            kernel = _KERNELS[self.pick(self.kernel_cum)][0]
            gpu = self.random() < 0.15
            s.emit(
                NOTEBOOK_SESSION_START,
                {"kernel": kernel, "cores": 4 << self.getrandbits(2), "gpu": gpu},
            )
        elif section == "workflows":
            for _ in range(1 + (self.random() < 0.25)):
                self.workflow(s, day, project)
                s.wait(15000)
        elif section == "search":
            for _ in range(self.geometric(1.6)):
                self.search(s)
                s.wait(9000)

    def error_code(self, incident: bool) -> str:
        roll = self.random()
        if incident:
            return "500" if roll < 0.45 else "timeout" if roll < 0.9 else "404"
        return (
            "404" if roll < 0.42 else "403" if roll < 0.67 else "500" if roll < 0.87 else "timeout"
        )

    def commit(self, s: _Session, project: str) -> None:
        files = self.geometric(3.0)
        s.emit(
            PROJECT_COMMIT,
            {
                "project_id": project,
                "files": files,
                "lines_added": self.lognorm(40.0 * files, 1.0),
                "lines_removed": self.lognorm(12.0 * files, 1.1),
            },
        )

    def dataset(self, s: _Session) -> None:
        rng = self.rng
        s.emit(
            DATASET_CREATE,
            {
                "dataset_id": self.hexid("d-", 32),
                "format": rng.choice(_FORMATS),
                "size_mb": round(
                    250.0 * math.exp(1.8 * _NORMAL[self.getrandbits(_NORMAL_BITS)]), 1
                ),
                "tags": rng.sample(_TAGS, 1 + self.getrandbits(1) + self.getrandbits(1)),
            },
        )

    def workflow(self, s: _Session, day: int, project: str) -> None:
        fail = 0.22 if self.in_incident(day) else 0.07
        failed = self.random() < fail
        duration = self.lognorm(90_000.0 if not failed else 25_000.0, 1.2)
        s.emit(
            WORKFLOW_RUN,
            {
                "workflow_id": f"w-{project[2:]}-{self.getrandbits(4)}",
                "engine": _ENGINES[self.getrandbits(2)],
                "steps": self.geometric(6.0),
                "status": "failed" if failed else "success",
                "duration_ms": duration,
            },
        )

    def search(self, s: _Session) -> None:
        length = self.geometric(18.0)
        results = 0 if self.random() < 0.08 else self.lognorm(60.0, 1.3)
        scope = ("datasets", "projects", "docs")[self.pick([0.5, 0.8, 1.0])]
        s.emit(SEARCH_QUERY, {"scope": scope, "query_length": length, "results": results})

    def python_session(self, u: _User, day: int) -> list[dict[str, Any]]:
        """A batch job from the Python client: a few workflow runs, sometimes data and commits."""
        site = self.sites[u.site]
        version = self.py_versions[day]
        s = _Session(
            self,
            site=site.slug,
            t=self.session_start_ms(day, site),
            client=(PY_LIBRARY, version, "server"),
            ua=_PY_UA.format(version),
            locale=None,
            uid=u.uid,
            anon=None,
            logged_in=True,
            page=False,
            experiments=None,
            version=self.versions[day],
        )
        project = self.rng.choice(u.projects)
        if self.random() < 0.2:
            self.dataset(s)
            s.wait(5000)
        for _ in range(self.geometric(2.5)):
            self.workflow(s, day, project)
            s.t += int(s.events[-1]["data"]["duration_ms"])
            s.wait(3000)
        if self.random() < 0.3:
            self.commit(s, project)
        return self.finish(s)

    def visitor_session(self, day: int) -> list[dict[str, Any]]:
        """Someone who looks around the public pages without signing in."""
        live = [i for i, launch in enumerate(self.launch) if launch <= day]
        site = self.sites[live[self.pick(_cumulative(self.sites[i].weight for i in live))]]
        if self.visitors and self.random() < 0.3:
            anon, browser_index = self.rng.choice(self.visitors)
        else:
            anon, browser_index = self.hexid("a-", 40), self.pick(self.browser_cum)
            if len(self.visitors) < 5000:
                self.visitors.append((anon, browser_index))
        browser, _, ua = _BROWSERS[browser_index]
        t = self.session_start_ms(day, site)
        variant = self.assign(anon) if self.running(t) else VARIANTS[0]
        s = _Session(
            self,
            site=site.slug,
            t=t,
            client=(JS_LIBRARY, self.js_versions[day], "web"),
            ua=ua,
            locale=site.locale if self.random() < 0.6 else "en-GB",
            uid=None,
            anon=anon,
            logged_in=False,
            page=True,
            experiments=variant if self.running(t) else None,
            version=self.versions[day],
        )
        self.land(s, site, self.rng.choice(_PUBLIC_PAGES), "public", self.load_ms(day, browser))
        for _ in range(self.geometric(2.5) - 1):
            s.wait(2000)
            s.navigate(
                f"{site.host}{self.rng.choice(_PUBLIC_PAGES)}", "public", self.load_ms(day, browser)
            )
            if self.random() < 0.15:
                s.wait(6000)
                self.search(s)
        if self.random() < 0.08:
            s.wait(4000)
            self.show_dialog(s, anon)
            latency = self.lognorm(_STEP_MEDIAN_MS[variant][0], _STEP_SIGMA[0], tail=0.04)
            s.t += latency
            s.emit(SIGNIN_OPEN, {"variant": variant, "duration_ms": latency, "trigger": "header"})
        return self.end(s, day)

    def crawler_session(self, day: int) -> list[dict[str, Any]]:
        index = self.rng.randrange(len(self.sites))
        if self.launch[index] > day:
            return []
        site = self.sites[index]
        s = _Session(
            self,
            site=site.slug,
            t=self.session_start_ms(day, site),
            client=(JS_LIBRARY, self.js_versions[day], "web"),
            ua=_GOOGLEBOT,
            locale="en-US",
            uid=None,
            anon=self.hexid("a-", 40),
            logged_in=False,
            page=True,
            experiments=None,
            version=self.versions[day],
        )
        first, *rest = self.rng.sample(_PUBLIC_PAGES, 2 + self.rng.randrange(4))
        self.land(s, site, first, "public", self.lognorm(650.0, 0.5), direct=True)
        for path in rest:
            s.wait(1200, 0.5)
            s.navigate(f"{site.host}{path}", "public", self.lognorm(650.0, 0.5))
        return self.finish(s)

    def monitor_session(self, day: int, hour: int) -> list[dict[str, Any]]:
        """The uptime monitor opens the home page and the sign-in dialog, then leaves."""
        site = self.sites[0]
        anon = self.hexid("a-", 40)
        t = self.start_ms + day * _DAY_MS + hour * _HOUR_MS + int(self.random() * 60_000)
        s = _Session(
            self,
            site=site.slug,
            t=t,
            client=(JS_LIBRARY, self.js_versions[day], "web"),
            ua=_HEADLESS,
            locale="en-US",
            uid=None,
            anon=anon,
            logged_in=False,
            page=True,
            experiments=None,
            version=self.versions[day],
        )
        self.land(s, site, "/", "home", self.load_ms(day, "chrome"), direct=True)
        s.wait(900, 0.3)
        latency = self.lognorm(_STEP_MEDIAN_MS["a"][0], _STEP_SIGMA[0])
        s.t += latency
        s.emit(SIGNIN_OPEN, {"variant": "a", "duration_ms": latency, "trigger": "monitor"})
        return self.finish(s)


def generate(
    *,
    users: int = 1500,
    days: int = 183,
    end: dt.date | None = None,
    seed: int = 7,
    sites: int = 12,
) -> Iterator[dict[str, Any]]:
    """Yield the demo product's events (monoschema v1 dicts, ready for JSON).

    The window is the ``days`` days ending with ``end`` (included; default: today in UTC, and
    then no event is later than now). Same arguments, same events.
    """
    if end is None:
        now = dt.datetime.now(dt.UTC)
        end = now.date()
        cutoff_ms = int(now.timestamp() * 1000)
    else:
        cutoff_ms = ((end - _EPOCH).days + 1) * _DAY_MS
    spec = DemoSpec(users=users, days=days, end=end, seed=seed, sites=sites)
    return _Gen(spec, cutoff_ms).run()


def is_bot(user_agent: str | None) -> bool:
    """Whether a User-Agent string belongs to a crawler or a headless browser."""
    if not user_agent:
        return False
    lowered = user_agent.lower()
    return any(marker in lowered for marker in BOT_MARKERS)


def summary(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts that describe a batch of events: totals, sites, users, funnel and error rate, and
    the experiment's exposures and bounce rate per variant.

    The sign-in funnel counts only events in the experiment and leaves out bots. ``exposures``
    counts the browsers exposed to each variant; ``bounce_rate`` is the share of their sessions
    that end with one page view, from each browser's first exposure on (what
    ``tally experiments analyze signin-dialog`` reports as ``bounce_rate``).
    """
    by_name: Counter[str] = Counter()
    sites: set[str] = set()
    users: set[str] = set()
    sessions: set[str] = set()
    funnel = {v: [0, 0, 0, 0] for v in VARIANTS}
    step_of = {name: i for i, name in enumerate(FUNNEL)}
    first, last, bots, total = "", "", 0, 0
    exposed: dict[str, tuple[str, str]] = {}  # browser → (first exposure, variation)
    ends: dict[str, list[tuple[str, bool]]] = {}  # browser → [(session end, bounced)]
    for e in events:
        total += 1
        name = e["name"]
        by_name[name] += 1
        ts = e["client_ts"]
        if not first or ts < first:
            first = ts
        if ts > last:
            last = ts
        sites.add(e["app"]["instance"])
        uid = e["user"].get("id")
        if uid:
            users.add(uid)
        sessions.add(e["session"]["id"])
        bot = is_bot(e.get("agent", {}).get("user_agent"))
        bots += bot
        step = step_of.get(name)
        if step is not None and not bot:
            variant = e.get("experiments", {}).get(EXPERIMENT)
            if variant in funnel:
                funnel[variant][step] += 1
        elif name == EXPERIMENT_EXPOSURE and e["data"]["experiment"] == EXPERIMENT:
            anon = e["user"]["anonymous_id"]
            seen = exposed.get(anon)
            if seen is None or ts < seen[0]:
                exposed[anon] = (ts, e["data"]["variation"])
        elif name == SESSION_END and not bot:
            anon = e["user"].get("anonymous_id")
            if anon:
                ends.setdefault(anon, []).append((ts, e["data"]["pageviews"] == 1))
    views = by_name[PAGE_VIEW]
    exposures = dict.fromkeys(VARIANTS, 0)
    bounces = {v: [0, 0] for v in VARIANTS}
    for anon, (since, variant) in exposed.items():
        exposures[variant] = exposures.get(variant, 0) + 1
        counts = bounces.setdefault(variant, [0, 0])
        for ts, bounced in ends.get(anon, ()):
            if ts >= since:
                counts[0] += bounced
                counts[1] += 1
    return {
        "events": total,
        "by_name": dict(sorted(by_name.items())),
        "sites": sorted(sites),
        "users": len(users),
        "sessions": len(sessions),
        "bot_events": bots,
        "first_ts": first,
        "last_ts": last,
        "funnel": funnel,
        "conversion": {v: (c[3] / c[0] if c[0] else 0.0) for v, c in funnel.items()},
        "error_rate": by_name[ERROR_SHOWN] / views if views else 0.0,
        "exposures": exposures,
        "bounce_rate": {v: (b / n if n else 0.0) for v, (b, n) in bounces.items()},
    }
