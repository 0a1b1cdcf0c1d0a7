"""The dashboard's Starlette app: four bookmarkable pages, the action POSTs, and the login form."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from . import sources
from .charts import TurnRate, WorkerRates, svg_path
from .security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Guard, host_header_name, is_loopback
from .sources import ACTIONS, COUNT_CAP, FILTERS, STATES, DataSource, Unavailable

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
HISTORY_SHOWN = 200
POLL = "every 2s"  # live updates: htmx polls each page's live part (the issue asks for 2 s or less)

# What each action's button asks before it does anything (htmx's hx-confirm; the browser's own dialog).
CONFIRM = {
    "pause": "Pause actor {id}? It takes no more turns until resumed; mail is still accepted.",
    "resume": "Resume actor {id}?",
    "retry": "Retry actor {id} from its last committed record? The turn that failed runs again.",
    "cancel": "Drop this message from actor {id}'s mailbox?",
    "fork": "Fork actor {id} at this turn into a new actor?",
    "reset": "Reset actor {id} to this turn? Later state is lost.",
    "delete": "Delete actor {id}, its mailbox and its records? This cannot be undone.",
}


def _pretty(value: Any) -> str:
    """A describe value as text (the template escapes it)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _age(seen: Any) -> str:
    try:
        return f"{max(0.0, time.time() - float(seen)):.1f} s"
    except (TypeError, ValueError):
        return "—"


def _due(at: Any) -> str:
    """When a pending call (a timer) is due, relative to now: its unix time read as "1796621415.96"."""
    try:
        left = float(at) - time.time()
    except (TypeError, ValueError):
        return "—"
    return f"in {left:.1f} s" if left >= 0 else f"{-left:.1f} s ago"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        # Everything from actors and Redis is untrusted: IDs, reasons, arguments, results.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = _pretty
    env.filters["age"] = _age
    env.filters["due"] = _due
    env.filters["quote_id"] = lambda actor_id: quote(str(actor_id), safe="")
    return env


class _Guarded:
    """ASGI middleware: the Host check without a token, the token check with one, and security headers."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        guard = self.guard
        if guard.token is None and not is_loopback(host_header_name(request.headers.get("host", ""))):
            # Without a token the pages are only for this machine: a DNS-rebinding page must not read them.
            response: Response = PlainTextResponse(
                "this dashboard has no token, so it answers only loopback Host names (127.0.0.1, localhost); "
                "start it with --token to serve other hosts", status_code=400)
            await response(scope, receive, send)
            return
        path = scope.get("path", "")
        # The login form, and the static files it uses: the htmx and CSS the wheel ships, no data.
        public = path == "/login" or path.startswith("/static/")
        if not public and not guard.allows(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)):
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                response = RedirectResponse(_prefix(scope) + "/login?" + urlencode({"next": path}), status_code=303)
            else:
                response = PlainTextResponse("a token is required: Authorization: Bearer TOKEN, or log in at /login",
                                             status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                for name, value in _SECURITY_HEADERS:
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


_SECURITY_HEADERS = [
    # No inline script anywhere: even a markup injection could not run code.
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),  # the buttons must not be clickable through another site's frame
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def _prefix(scope: Mapping[str, Any]) -> str:
    """Where the app is mounted (``""`` at the root), for the links it writes."""
    return str(scope.get("root_path", "")).rstrip("/")


class Dashboard:
    """The pages over one :class:`DataSource`."""

    def __init__(self, source: DataSource, guard: Guard, read_only: bool) -> None:
        self.source = source
        self.guard = guard
        self.read_only = read_only
        self.env = _environment()
        self.rate = TurnRate()
        self.worker_rates = WorkerRates()

    # ---- rendering ----

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        browser_id = request.cookies.get(CSRF_COOKIE)
        fresh = not browser_id
        if not browser_id:
            browser_id = self.guard.new_browser_id()
        html = self.env.get_template(template).render(
            base=_prefix(request.scope),
            source=self.source,
            read_only=self.read_only,
            logged_in=self.guard.token is not None and bool(request.cookies.get(SESSION_COOKIE)),
            csrf_field=CSRF_FIELD,
            csrf=self.guard.csrf_token(browser_id),
            poll=POLL,
            request_path=request.url.path,
            # What the live part polls: this very page, filters and cursor included.
            live_url=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if fresh:
            response.set_cookie(CSRF_COOKIE, browser_id, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")
        return response

    # ---- pages ----

    async def overview(self, request: Request) -> Response:
        notes: list[str] = []
        ov = await self.source.overview()
        notes.extend(ov.notes)
        if ov.turns is not None:
            self.rate.add(ov.turns)
        workers = await self._workers(notes)
        now = time.monotonic()
        points = list(self.rate.points)
        # The x-axis spans what has been sampled (a minute at least, ten at most), so a page
        # opened a moment ago shows a line, not a sliver at the right edge.
        span = min(self.rate.window, max(60.0, now - points[0].at if points else 0.0))
        line, top = svg_path(points, 600, 120, span, now)
        return self.render(request, "overview.html", overview=ov, states=STATES, workers=workers, notes=notes,
                           chart_line=line, chart_top=top, rate=self.rate.current, samples=len(points),
                           span=span, count_cap=COUNT_CAP)

    async def _workers(self, notes: list[str]) -> list[dict[str, Any]] | None:
        try:
            workers = await self.source.workers()
        except Unavailable as exc:
            notes.append(str(exc))
            return None
        rows = []
        for worker in workers:
            rate = self.worker_rates.add(str(worker.get("id")), int(worker.get("turns") or 0))
            rows.append({**worker, "rate": rate})
        return rows

    async def actors(self, request: Request) -> Response:
        params = request.query_params
        wanted = params.get("q", "").strip()
        if wanted and await self.source.actor(wanted) is not None:
            return RedirectResponse(f"{_prefix(request.scope)}/actors/{quote(wanted, safe='')}", status_code=303)
        filters = {name: params.get(name, "").strip() for name in FILTERS if name in self.source.filters}
        if filters.get("state") and filters["state"] not in STATES:
            filters["state"] = ""
        cursor = params.get("cursor") or None
        notes: list[str] = []
        partial = False
        try:
            page = await self.source.actors(filters, cursor, PAGE_SIZE)
            rows, next_cursor, partial = page.rows, page.next_cursor, page.partial
        except Unavailable as exc:
            notes.append(str(exc))
            rows, next_cursor = [], None
        if partial:
            notes.append(f"a complete answer: the search stopped after {sources.SEARCH_BUDGET_S:g} s with {len(rows)} "
                         "matches (these filters walk every actor; state=failed or paused reads an index). "
                         "This page does not refresh itself")
        next_query = urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor}) if next_cursor \
            else None
        return self.render(request, "actors.html", rows=rows, filters=filters, states=STATES,
                           next_query=next_query, cursor=cursor, notes=notes, searched=wanted, live=not partial)

    async def actor(self, request: Request, result: str | None = None, error: str | None = None) -> Response:
        actor_id = request.path_params["actor_id"]
        info = await self.source.actor(actor_id)
        if info is None:
            return self.render(request, "missing.html", status_code=404, actor_id=actor_id, result=result,
                               error=error)
        history: list[dict[str, Any]] | None = None
        history_note = None
        try:
            history = await self.source.history(actor_id, HISTORY_SHOWN)
        except Unavailable as exc:
            history_note = str(exc)
        actions = [] if self.read_only else [a for a in ACTIONS if a in self.source.actions()]
        shown = {k: v for k, v in info.items() if k not in ("id", "pending_calls")}
        return self.render(request, "actor.html", actor_id=actor_id, info=info, shown=shown, history=history,
                           history_note=history_note, actions=actions,
                           confirm={a: CONFIRM[a].format(id=actor_id) for a in actions},
                           result=result, error=error)

    async def act(self, request: Request) -> Response:
        """POST /actors/{id}: the action named in the form, after the CSRF check."""
        if self.read_only:
            return PlainTextResponse("this dashboard is read-only (--read-only): actions are refused",
                                     status_code=403)
        form = await _form(request)
        if not self.guard.csrf_ok(request.cookies.get(CSRF_COOKIE), _field(form, CSRF_FIELD)):
            return PlainTextResponse("missing or wrong CSRF token: reload the page and try again", status_code=403)
        actor_id = request.path_params["actor_id"]
        action = _field(form, "action") or ""
        result = error = None
        if action not in ACTIONS:
            error = f"unknown action {action!r}"
        else:
            try:
                result = await self.source.act(actor_id, action, form)
            except (ValueError, Unavailable) as exc:
                error = str(exc)
            except Exception as exc:  # what the operation raised is what the operator needs to see
                error = f"{type(exc).__name__}: {exc}"
        if request.headers.get("hx-request"):
            # 200 either way: htmx swaps only successful responses in, and the error is the message to show.
            return self.render(request, "result.html", result=result, error=error)
        return await self.actor(request, result=result, error=error)

    async def workers(self, request: Request) -> Response:
        notes: list[str] = []
        workers = await self._workers(notes)
        # Each worker's actors are a link to the table filtered by owner, not listed here: no index
        # is kept by owner, and this page refreshes itself every 2 s.
        return self.render(request, "workers.html", workers=workers, notes=notes,
                           by_owner="owner" in self.source.filters)

    # ---- login ----

    async def login_form(self, request: Request) -> Response:
        if self.guard.token is None:
            return RedirectResponse(_prefix(request.scope) + "/", status_code=303)
        return self.render(request, "login.html", next=_local_path(request.query_params.get("next")), error=None)

    async def login(self, request: Request) -> Response:
        if self.guard.token is None:
            return RedirectResponse(_prefix(request.scope) + "/", status_code=303)
        form = await _form(request)
        if not self.guard.csrf_ok(request.cookies.get(CSRF_COOKIE), _field(form, CSRF_FIELD)):
            return PlainTextResponse("missing or wrong CSRF token: reload the login page", status_code=403)
        target = _local_path(_field(form, "next"))
        if not self.guard.token_matches(_field(form, "token") or ""):
            return self.render(request, "login.html", status_code=401, next=target, error="wrong token")
        response = RedirectResponse(_prefix(request.scope) + target, status_code=303)
        response.set_cookie(SESSION_COOKIE, self.guard.session_value(), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        if not self.guard.csrf_ok(request.cookies.get(CSRF_COOKIE), _field(form, CSRF_FIELD)):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        response = RedirectResponse(_prefix(request.scope) + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


_FORM_LIMIT = 64 * 1024  # the dashboard's forms carry a few short fields


async def _form(request: Request) -> dict[str, str]:
    """A POST's urlencoded fields (what browsers and htmx send for these forms).

    Parsed here rather than by Starlette, whose form parser needs python-multipart for no gain:
    no form of the dashboard uploads files.
    """
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _field(form: Mapping[str, str], name: str) -> str | None:
    return form.get(name)


def _local_path(target: str | None) -> str:
    """Where to go after logging in: a path of this app, never another site (``//evil``, ``https://``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def build(source: DataSource, token: str | None, read_only: bool) -> ASGIApp:
    """The ASGI app for ``source``: the routes, wrapped in the guards."""
    guard = Guard(token)
    dash = Dashboard(source, guard, read_only)

    routes = [
        Route("/", dash.overview, methods=["GET"]),
        Route("/actors", dash.actors, methods=["GET"]),
        Route("/actors/{actor_id:path}", dash.actor, methods=["GET"]),
        Route("/actors/{actor_id:path}", dash.act, methods=["POST"]),
        Route("/workers", dash.workers, methods=["GET"]),
        Route("/login", dash.login_form, methods=["GET"]),
        Route("/login", dash.login, methods=["POST"]),
        Route("/logout", dash.logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Run when the app is served on its own; mounted in another app, the source closes with the process.
        try:
            yield
        finally:
            await source.aclose()

    return _Guarded(Starlette(routes=routes, lifespan=lifespan), guard)


__all__ = ["Dashboard", "build"]
