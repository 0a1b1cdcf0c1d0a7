"""From an installed wheel: the dashboard renders its pages and serves its vendored htmx (no network).

Drives the ASGI app by hand (no HTTP client needed in the wheel's venv) over an in-process Runtime.
"""

import anyio

import mvactors
from mvactors.dashboard import create_app


async def get(app, path):
    sent = []
    requested = False
    finished = anyio.Event()

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()  # as a server does: the client goes away once the response is complete
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def main():
    async with mvactors.Runtime() as rt:
        await rt.spawn(mvactors.compile("vmExport(1, (x) => x);"), actor_id="smoke")
        app = create_app(runtime=rt)
        for path in ("/", "/actors", "/actors/smoke", "/workers", "/static/htmx.min.js", "/static/dashboard.css"):
            status, body = await get(app, path)
            assert status == 200 and body, (path, status)
        print("dashboard pages from the wheel: ok")


anyio.run(main, backend="asyncio")
