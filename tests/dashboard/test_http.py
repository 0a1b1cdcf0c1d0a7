"""The dashboard over plain HTTP (an in-process Runtime): pages, filters, paging, escaping, token, CSRF, read-only."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

import mvactors
from mvactors.dashboard import create_app
from mvactors.dashboard.charts import TurnRate, svg_path
from mvactors.dashboard.security import Guard, host_header_name, is_loopback

from .support import GUEST, HOSTILE_ID, HOSTILE_REASON, IMG, SCRIPT, client_for, csrf_of, populate

pytestmark = pytest.mark.anyio
STATIC = Path(mvactors.__file__).parent / "dashboard" / "static"


@pytest.fixture
def guest(compile_js) -> bytes:  # type: ignore[no-untyped-def]
    return compile_js(GUEST)  # type: ignore[no-any-return]


def actor_url(actor_id: str) -> str:
    return "/actors/" + quote(actor_id, safe="")


async def test_every_page_renders_and_says_what_the_runtime_has(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        ids = await populate(rt, guest)
        async with client_for(create_app(runtime=rt)) as http:
            overview = await http.get("/")
            assert overview.status_code == 200
            assert 'data-state="paused"' in overview.text and "turns/s" in overview.text
            assert "unlucky" in overview.text  # the latest failures link to their actor
            listing = await http.get("/actors")
            assert all(f'data-actor="{i}"' in listing.text for i in ("plain-0", "plain-1", "gassy", "unlucky"))
            actor = await http.get(actor_url(ids["gassy"]))
            assert actor.status_code == 200
            assert 'data-field="state">paused<' in actor.text and "per_turn" in actor.text
            assert 'data-action="resume"' in actor.text  # the Runtime can resume a gas pause
            workers = await http.get("/workers")
            assert workers.status_code == 200 and "this process" in workers.text
            assert (await http.get("/actors/nobody")).status_code == 404
            assert (await http.get("/static/htmx.min.js")).status_code == 200


async def test_the_state_filter_narrows_the_table_and_search_finds_an_exact_id(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        await populate(rt, guest)
        async with client_for(create_app(runtime=rt)) as http:
            paused = (await http.get("/actors", params={"state": "paused"})).text
            assert 'data-actor="gassy"' in paused and 'data-actor="plain-0"' not in paused
            found = await http.get("/actors", params={"q": "plain-1"})
            assert found.status_code == 303 and found.headers["location"] == "/actors/plain-1"
            missing = await http.get("/actors", params={"q": "plain-9"})
            assert "No actor with ID" in missing.text


async def test_paging_by_cursor_shows_every_actor_once(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        for i in range(120):
            await rt.spawn(guest, actor_id=f"a{i:03d}")
        async with client_for(create_app(runtime=rt)) as http:
            seen: list[str] = []
            url = "/actors"
            for _ in range(5):
                page = (await http.get(url)).text
                seen += [line.split('"')[1] for line in page.split("data-actor=")[1:]]
                nxt = page.find('rel="next"')
                if nxt < 0:
                    break
                url = page[page.rfind('href="', 0, nxt) + 6:page.find('"', page.rfind('href="', 0, nxt) + 6)]
                url = url.replace("&amp;", "&")
            assert seen == [f"a{i:03d}" for i in range(120)]


async def test_actor_strings_are_escaped_everywhere(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        ids = await populate(rt, guest)
        async with client_for(create_app(runtime=rt)) as http:
            pages = [await http.get(p) for p in ("/", "/actors", actor_url(ids["hostile"]), actor_url("unlucky"),
                                                 "/actors?q=" + quote(HOSTILE_ID + "x"), actor_url(SCRIPT))]
            for page in pages:
                assert "<script>window" not in page.text, page.url
                assert "<img src=x" not in page.text, page.url
            assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in pages[2].text
            assert "reason &lt;script&gt;" in pages[3].text  # the failure reason, as text
            assert HOSTILE_REASON not in pages[3].text and IMG not in pages[2].text
            assert pages[0].headers["content-security-policy"].startswith("default-src 'self'")
            assert pages[0].headers["x-frame-options"] == "DENY"


async def test_resume_is_a_post_with_a_csrf_token_and_a_get_changes_nothing(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        await populate(rt, guest)
        gassy = rt.get("gassy")
        async with client_for(create_app(runtime=rt)) as http:
            page = await http.get("/actors/gassy", params={"action": "resume"})
            assert gassy.state == "paused"  # a GET never acts
            token = csrf_of(page.text)
            no_token = await http.post("/actors/gassy", data={"action": "resume"})
            wrong = await http.post("/actors/gassy", data={"action": "resume", "csrf": "0" * 64})
            assert no_token.status_code == wrong.status_code == 403
            assert gassy.state == "paused"
            # Another browser's token (made for another CSRF cookie) does not do either.
            async with client_for(create_app(runtime=rt)) as other:
                their = csrf_of((await other.get("/actors/gassy")).text)
            assert (await http.post("/actors/gassy", data={"action": "resume", "csrf": their})).status_code == 403
            done = await http.post("/actors/gassy", data={"action": "resume", "csrf": token, "extra_gas": "1000000"},
                                   headers={"HX-Request": "true"})
            assert done.status_code == 200 and "resumed gassy" in done.text
            await rt.wait_idle()
            assert gassy.state == "idle" and gassy.metrics.turns == 1
            again = await http.post("/actors/gassy", data={"action": "resume", "csrf": token},
                                    headers={"HX-Request": "true"})
            assert "is not paused" in again.text  # refused, saying why
            unknown = await http.post("/actors/gassy", data={"action": "explode", "csrf": token})
            assert "unknown action" in unknown.text


async def test_read_only_hides_the_buttons_and_refuses_their_posts(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        await populate(rt, guest)
        async with client_for(create_app(runtime=rt, read_only=True)) as http:
            page = await http.get("/actors/gassy")
            assert "data-action=" not in page.text and "read-only" in page.text
            refused = await http.post("/actors/gassy", data={"action": "resume", "csrf": "any"})
            assert refused.status_code == 403
            assert rt.get("gassy").state == "paused"


async def test_a_token_is_needed_for_every_page_by_bearer_or_login_cookie(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        await populate(rt, guest)
        app = create_app(runtime=rt, token="s3cret")
        async with client_for(app) as http:
            assert (await http.get("/")).status_code == 401
            assert (await http.get("/actors/gassy")).status_code == 401
            assert (await http.post("/actors/gassy", data={"action": "resume"})).status_code == 401
            browser = await http.get("/workers", headers={"Accept": "text/html"})
            assert browser.status_code == 303 and browser.headers["location"] == "/login?next=%2Fworkers"
            assert (await http.get("/", headers={"Authorization": "Bearer nope"})).status_code == 401
            assert (await http.get("/", headers={"Authorization": "Bearer s3cret"})).status_code == 200
            assert (await http.get("/static/dashboard.css")).status_code == 200  # no data in it

            form = await http.get("/login", params={"next": "/workers"})
            token = csrf_of(form.text)
            bad = await http.post("/login", data={"token": "guess", "csrf": token, "next": "/workers"})
            assert bad.status_code == 401 and "wrong token" in bad.text
            no_csrf = await http.post("/login", data={"token": "s3cret", "next": "/workers"})
            assert no_csrf.status_code == 403
            ok = await http.post("/login", data={"token": "s3cret", "csrf": token, "next": "/workers"})
            assert ok.status_code == 303 and ok.headers["location"] == "/workers"
            cookie = ok.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
            assert "s3cret" not in cookie
            assert (await http.get("/workers")).status_code == 200  # the cookie now
            # Logging in never sends a browser to another site.
            away = await http.post("/login", data={"token": "s3cret", "csrf": token, "next": "//evil.example/"})
            assert away.headers["location"] == "/"
            out = await http.post("/logout", data={"csrf": token})
            assert out.status_code == 303
            assert (await http.get("/")).status_code == 401


async def test_without_a_token_only_loopback_host_names_are_answered(guest: bytes) -> None:
    async with mvactors.Runtime() as rt:
        open_app = create_app(runtime=rt)
        async with client_for(open_app) as http:
            assert (await http.get("/", headers={"Host": "localhost:8000"})).status_code == 200
            assert (await http.get("/", headers={"Host": "[::1]:8000"})).status_code == 200
            rebound = await http.get("/", headers={"Host": "attacker.example:8000"})
            assert rebound.status_code == 400 and "--token" in rebound.text
        async with client_for(create_app(runtime=rt, token="t")) as http:
            named = await http.get("/", headers={"Host": "dash.example", "Authorization": "Bearer t"})
            assert named.status_code == 200


def test_guard_helpers() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.com")
    assert host_header_name("127.0.0.1:8000") == "127.0.0.1" and host_header_name("[::1]:80") == "::1"
    guard = Guard("t")
    assert guard.token_matches("t") and not guard.token_matches("") and not guard.token_matches("tt")
    assert guard.csrf_ok("browser", guard.csrf_token("browser")) and not guard.csrf_ok("other", guard.csrf_token("b"))
    assert not guard.allows(None, "é" * 64) and not guard.csrf_ok("browser", "é")  # refused, not a TypeError
    with pytest.raises(ValueError):
        Guard("")


def test_turn_rate_chart_starts_its_axis_at_zero() -> None:
    rate = TurnRate()
    for second, turns in enumerate([0, 10, 30, 30, 35]):
        rate.add(turns, now=100.0 + second)
    assert [p.rate for p in rate.points] == [10, 20, 0, 5]
    line, top = svg_path(list(rate.points), 600, 120, rate.window, now=104.0)
    assert top == 20
    assert line.split()[2].endswith(",120.0")  # 0 turns/s sits on the x axis


def test_htmx_is_the_vendored_2x_file_with_its_licence() -> None:
    data = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    assert b'version:"2.0.11"' in data
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE.txt").read_text()
    # No page loads anything from another host.
    for template in (STATIC.parent / "templates").glob("*.html"):
        assert "https://" not in template.read_text() and "http://" not in template.read_text(), template


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mvactors", "dashboard", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_cli_refuses_a_public_host_without_a_token_and_says_why() -> None:
    public = run_cli("--redis", "redis://127.0.0.1:1/0", "--host", "0.0.0.0")
    assert public.returncode == 2
    assert "without --token" in public.stderr and "pause and delete" in public.stderr
    env = {k: v for k, v in os.environ.items() if k != "MVACTORS_REDIS"}
    nowhere = run_cli(env=env)
    assert nowhere.returncode == 2 and "$MVACTORS_REDIS" in nowhere.stderr
    unreachable = run_cli("--redis", "redis://127.0.0.1:1/0", "--port", "0")
    assert unreachable.returncode == 1 and "cannot reach Redis" in unreachable.stderr
