"""The dashboard in a real browser: Debian's chromium driven by Playwright.

In-process: the fleet example's thermostats on a wall-clock Runtime (``create_app(runtime=...)``).
Over Redis: a real redis-server, a real ``mvactors worker`` and ``mvactors dashboard`` as processes.
Screenshots of every page are left in ``browser.screenshot_dir()`` (printed at the end of the run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import anyio
import anyio.from_thread
import pytest

import mvactors
from mvactors.dashboard import create_app

from .browser import CHROMIUM_FLAGS, chromium_path, fleet_runtime, screenshot_dir, served
from .support import ECHO, GUEST, HOSTILE_ID, IMG, SCRIPT, populate

playwright_api = pytest.importorskip("playwright.sync_api")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: ./dev setup installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (./dev setup installs it)")
    with playwright_api.sync_playwright() as pw:
        # launch() gives every browser a fresh profile directory of its own.
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context (no cookies) whose page fails the test on any script error or unexpected dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Any, mvactors.Runtime, str]]:
    """20 thermostats sampling every second, the XSS actors, a gas-paused one; the dashboard over them."""
    with fleet_runtime(devices=20, period_s=1) as (portal, rt):
        snapshot = mvactors.compile(GUEST)
        portal.call(populate, rt, snapshot)
        with served(create_app(runtime=rt), portal) as url:
            yield portal, rt, url


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=True)


def wait_until(page: Any, expression: str, timeout: float = 8.0) -> None:
    """Poll ``expression`` in the page until it is true.  (Playwright's wait_for_function evaluates
    strings with eval, which the dashboard's CSP forbids; evaluate() goes through the debugger.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


def no_injection(page: Any) -> None:
    """Nothing from an actor became markup or ran."""
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("main script").count() == 0


def test_every_page_renders_and_the_filter_narrows_the_table(page: Any, fleet: Any) -> None:
    _, _, url = fleet
    page.goto(url + "/")
    page.wait_for_selector("#turns-total")
    assert page.locator("a.tile[data-state='idle'] .count").inner_text().isdigit()
    shoot(page, "runtime-overview")
    page.goto(url + "/actors")
    everyone = page.locator("tr[data-actor]").count()
    assert everyone >= 20
    page.select_option("select[name=state]", "paused")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"state=paused"))
    assert page.locator("tr[data-actor]").count() == 1
    assert page.locator("tr[data-actor]").first.get_attribute("data-actor") == "gassy"
    page.goto(url + "/actors")
    page.fill("input[name=q]", "dev-000003")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(url + "/actors/dev-000003")
    assert page.locator("#actor-id").inner_text() == "dev-000003"
    assert page.locator("td[data-field=state]").inner_text() in ("idle", "running")
    shoot(page, "runtime-actor")
    page.goto(url + "/workers")
    assert "this process" in page.locator("main").inner_text()
    shoot(page, "runtime-workers")
    assert not page.errors, page.errors


def test_a_live_number_changes_without_a_reload(page: Any, fleet: Any) -> None:
    _, _, url = fleet
    page.goto(url + "/")
    before = int(page.locator("#turns-total").inner_text())
    page.evaluate("window.__same_document = true")
    # The devices sample every second and htmx polls every 2 s: a new count within a few polls.
    wait_until(page, f"Number(document.querySelector('#turns-total').textContent) > {before}")
    assert page.evaluate("window.__same_document") is True  # swapped in place, not reloaded
    wait_until(page, "document.querySelector('#turn-rate').textContent.trim() !== '—'")
    shoot(page, "runtime-overview-live")
    assert not page.errors, page.errors


def test_a_button_asks_first_then_shows_what_happened(page: Any, fleet: Any) -> None:
    portal, rt, url = fleet
    gassy = rt.get("gassy")
    page.goto(url + "/actors/gassy")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("button.action-resume")
    page.wait_for_timeout(300)
    assert asked == ["Resume actor gassy?"]
    assert portal.call(_state, gassy) == "paused"  # cancelled in the dialog: nothing sent

    page.once("dialog", lambda dialog: dialog.accept())
    page.fill("input[name=extra_gas]", "1000000")
    page.click("button.action-resume")
    page.wait_for_selector("#result .done")
    assert "resumed gassy" in page.locator("#result").inner_text()
    shoot(page, "runtime-actor-resumed")
    deadline = time.monotonic() + 5
    while portal.call(_state, gassy) != "idle" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert portal.call(_state, gassy) == "idle"
    # The page's live part follows: its state cell says idle within a poll or two.
    wait_until(page, "document.querySelector('td[data-field=state]').textContent === 'idle'", timeout=6)
    assert not page.errors, page.errors


async def _state(actor: mvactors.Actor) -> str:
    return str(actor.state)


def test_xss_payloads_stay_inert(page: Any, fleet: Any) -> None:
    _, _, url = fleet
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url + "/actors/" + quote(HOSTILE_ID, safe=""))
    assert page.locator("#actor-id").inner_text() == HOSTILE_ID  # shown as text, whole
    no_injection(page)
    page.goto(url + "/actors/unlucky")
    assert SCRIPT in page.locator("td[data-field=last_failure]").inner_text()
    assert IMG in page.locator("td[data-field=last_failure]").inner_text()
    no_injection(page)
    shoot(page, "runtime-xss-actor")
    for path in ("/", "/actors"):
        page.goto(url + path)
        page.wait_for_timeout(2_300)  # one live update swapped in too
        no_injection(page)
    assert HOSTILE_ID in page.locator("main").inner_text()
    assert dialogs == []


def test_the_token_is_asked_for_and_kept_in_an_httponly_strict_cookie(page: Any, fleet: Any) -> None:
    portal, rt, _ = fleet
    with served(create_app(runtime=rt, token="correct horse", read_only=True), portal) as url:
        page.goto(url + "/actors/gassy")
        page.wait_for_url(re.compile(r"/login\?next="))
        page.fill("input[name=token]", "wrong")
        page.click("form.login button")
        assert "wrong token" in page.locator(".error").inner_text()
        page.fill("input[name=token]", "correct horse")
        page.click("form.login button")
        page.wait_for_url(url + "/actors/gassy")
        assert page.locator("[data-action]").count() == 0  # read-only: no buttons
        cookie = next(c for c in page.context.cookies() if c["name"] == "mvactors_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "correct horse" not in cookie["value"]
        assert page.evaluate("document.cookie") == ""  # neither cookie is readable by scripts
        shoot(page, "runtime-read-only")
        # A form posted from the page without its CSRF field is refused, even logged in.
        status = page.evaluate("""async () => (await fetch(location.pathname, {method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'action=resume'})).status""")
        assert status == 403


# ---- over Redis: real redis-server, worker and `mvactors dashboard` processes ----


def run_async(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in an event loop of its own thread (Playwright's sync API holds one in this thread)."""
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        return portal.call(fn, *args)


class Child:
    """A child process whose output lines are read as they come."""

    def __init__(self, *argv: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-m", "mvactors", *argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)

    def line_with(self, text: str, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in output: {''.join(seen)}")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, str, dict[str, str]]]:
    """redis-server, one worker, actors spawned through the client, and the dashboard CLI; yields
    (redis URL, dashboard URL, role -> actor ID)."""
    from mvactors.testing import redis_server

    with redis_server() as redis_url:
        worker = Child("worker", "--redis", redis_url, "--imports", "dashboard_tables:IMPORTS")
        dashboard = None
        try:
            ids = run_async(_spawn_cluster_actors, redis_url)
            dashboard = Child("dashboard", "--redis", redis_url, "--port", "0")
            url = dashboard.line_with("open http://").split("open ", 1)[1].strip().rstrip("/")
            yield redis_url, url, ids
        finally:
            if dashboard is not None:
                assert dashboard.stop() == 0  # SIGTERM: a clean exit
            worker.stop()


async def _spawn_cluster_actors(url: str) -> dict[str, str]:
    snapshot = mvactors.compile(GUEST)
    async with mvactors.connect(url) as client:
        ids = {"plain": await client.spawn(snapshot, imports="plain", actor_id="plain-1")}
        await client.call("plain-1", ECHO, "hello", timeout=30)
        ids["hostile"] = await client.spawn(snapshot, imports="plain", actor_id=HOSTILE_ID)
        await client.call(HOSTILE_ID, ECHO, IMG, timeout=30)
        # No worker has this import table: it waits, and its describe() carries the payload.
        ids["stranded"] = await client.spawn(snapshot, imports=SCRIPT, actor_id="stranded")
        ids["doomed"] = await client.spawn(snapshot, imports="plain", actor_id="doomed")
    return ids


def test_over_redis_the_pages_render_and_delete_asks_then_deletes(page: Any, cluster: Any) -> None:
    redis_url, url, _ = cluster
    page.goto(url + "/")
    shoot(page, "redis-overview")
    page.goto(url + "/actors")
    assert page.locator("tr[data-actor='plain-1']").count() == 1
    page.fill("input[name=imports]", SCRIPT)
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"imports="))
    assert [page.locator("tr[data-actor]").nth(i).get_attribute("data-actor")
            for i in range(page.locator("tr[data-actor]").count())] == ["stranded"]
    page.goto(url + "/actors")
    shoot(page, "redis-actors")
    page.fill("input[name=q]", "plain-1")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(url + "/actors/plain-1")
    assert page.locator("td[data-field=turns]").inner_text() == "1"
    assert page.locator("td[data-field=imports]").inner_text() == "plain"
    shoot(page, "redis-actor")
    page.goto(url + "/workers")
    shoot(page, "redis-workers")
    page.goto(url + "/actors/doomed")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("button.action-delete")
    page.wait_for_selector("#result .done")
    assert "deleted doomed" in page.locator("#result").inner_text()
    assert asked and asked[0].startswith("Delete actor doomed, ")
    assert run_async(_exists, redis_url, "doomed") is False
    assert not page.errors, page.errors


async def _exists(url: str, actor_id: str) -> bool:
    from mvactors.cluster.errors import ActorNotFound

    async with mvactors.connect(url) as client:
        try:
            await client.describe(actor_id)
        except ActorNotFound:
            return False
    return True


def test_over_redis_pause_in_the_browser_pauses_and_resume_undoes_it(page: Any, cluster: Any) -> None:
    redis_url, url, _ = cluster
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(url + "/actors/plain-1")
    page.click("button.action-pause")
    page.wait_for_selector("#result .done")
    assert "paused plain-1" in page.locator("#result").inner_text()
    info = run_async(_describe, redis_url, "plain-1")
    assert info["state"] == "paused" and info["paused"]["reason"] == "operator"
    assert info["paused"]["detail"] == "paused from the dashboard"
    wait_until(page, "document.querySelector('td[data-field=state]').textContent === 'paused'")  # live
    shoot(page, "redis-actor-paused")
    page.click("button.action-resume")
    wait_until(page, "document.querySelector('#result').textContent.includes('resumed plain-1')")
    assert run_async(_describe, redis_url, "plain-1")["state"] != "paused"
    page.goto(url + "/actors?state=paused")
    assert page.locator("tr[data-actor]").count() == 0
    assert not page.errors, page.errors


async def _describe(url: str, actor_id: str) -> dict[str, Any]:
    async with mvactors.connect(url) as client:
        return await client.describe(actor_id)


def test_over_redis_hostile_ids_and_imports_stay_text(page: Any, cluster: Any) -> None:
    _, url, ids = cluster
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url + "/actors/" + quote(ids["hostile"], safe=""))
    assert page.locator("#actor-id").inner_text() == HOSTILE_ID
    no_injection(page)
    page.goto(url + "/actors/stranded")
    assert page.locator("td[data-field=imports]").inner_text() == SCRIPT
    no_injection(page)
    shoot(page, "redis-xss-actor")
    page.goto(url + "/actors?q=" + quote(HOSTILE_ID, safe=""))
    page.wait_for_url(re.compile(r"/actors/%3Cscript"))
    no_injection(page)
    assert dialogs == []


def test_screenshots_are_where_the_log_says(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\ndashboard screenshots: {screenshot_dir()}")
