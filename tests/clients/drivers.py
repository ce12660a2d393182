"""Drive the real Segment client libraries from tests: the npm ones pinned in tests/clients/package.json
(`@segment/analytics-node`, `@segment/analytics-next`) and the Python one from the dev extra
(`segment-analytics-python`, imported as `segment.analytics`).

- `npm_ci()`: `npm ci` in tests/clients, once per test session (about 5 s, 13 MB). Without npm or node it
  skips, or fails when CI is set.
- `await run_node(script, env)`: runs a CommonJS script with node from tests/clients, so
  `require('@segment/analytics-node')` resolves. Asynchronous on purpose: the API under test usually runs in
  the test's own event loop (tests/support/server.py), which a blocking subprocess call would stall.
- `segment_client(api_url, write_key)` and `await flush(client)`: the Python client with short test
  timings, and a flush that waits in a thread (the client's `flush()` blocks until the upload is answered).
- `serve_analytics_next(write_key, api_host)`: a loopback page that loads analytics-next from
  node_modules (nothing from Segment's CDN); yields the page's URL. `chromium()` launches Debian's Chromium
  with no name but the loopback's resolving; `outside_requests(context)` records requests off the loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

CLIENTS = Path(__file__).resolve().parent
NODE_MODULES = CLIENTS / "node_modules"
ANALYTICS_NEXT_UMD = NODE_MODULES / "@segment" / "analytics-next" / "dist" / "umd"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Nothing leaves the machine: every name but the loopback's fails to resolve (cdn.segment.com,
    # api.segment.io, ...), so a request the page should not make fails at once instead of waiting.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _missing(message: str) -> None:
    """Skip, or fail when CI is set: CI must run what a developer's machine may lack."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# -- npm and node -----------------------------------------------------------------------------------------

_npm_lock = threading.Lock()
_npm_done = False


def npm_ci() -> Path:
    """`npm ci --no-audit --no-fund` in tests/clients, once per session; returns its node_modules."""
    global _npm_done
    with _npm_lock:
        if _npm_done:
            return NODE_MODULES
        npm, node = shutil.which("npm"), shutil.which("node")
        if not npm or not node:
            _missing(
                "node and npm are needed for the Segment client tests (Node.js >= 20, which "
                "@segment/analytics-node requires): install them, then run `npm ci` in tests/clients"
            )
        assert npm is not None
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENTS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {CLIENTS} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        _npm_done = True
        return NODE_MODULES


async def run_node(
    script: str, env: Mapping[str, str] | None = None, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `script` (CommonJS) with node, from tests/clients so its packages resolve; `env` is added to
    this process's environment. With `check`, a non-zero exit fails the test with both outputs."""
    npm_ci()
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        "-",
        cwd=CLIENTS,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(script.encode()), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        pytest.fail(f"node ran over {timeout}s:\n{out.decode()}\n{err.decode()}")
    assert process.returncode is not None
    done = subprocess.CompletedProcess([node, "-"], process.returncode, out.decode(), err.decode())
    if check and done.returncode != 0:
        pytest.fail(f"node exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


# -- the Python client ------------------------------------------------------------------------------------


def segment_client(api_url: str, write_key: str, **options: Any) -> Any:
    """A `segment.analytics.Client` posting to `api_url` (+ `/v1/batch`), with test timings: batches close
    after 50 ms (not 0.5 s) and a failed upload is retried twice (not 10 times over about 3 minutes).
    `options` are the Client's own (`gzip=True`, `sync_mode=True`, `on_error=...`, `max_retries=...`)."""
    from segment.analytics import Client  # type: ignore[import-untyped]

    settings: dict[str, Any] = {"upload_interval": 0.05, "max_retries": 2, "timeout": 10}
    settings.update(options)
    return Client(write_key, host=api_url, **settings)


async def flush(client: Any) -> None:
    """`client.flush()` without blocking the event loop (it waits until every queued batch is answered)."""
    await asyncio.to_thread(client.flush)


# -- analytics-next in Chromium ---------------------------------------------------------------------------


def _segment_io(api_host: str, protocol: str) -> tuple[str, str]:
    """analytics-next's (`apiHost`, `protocol`): it posts to `{protocol}://{apiHost}/{t|p|i|g|a|s}` (and
    `/b`, `/m`). A URL `http://127.0.0.1:8123` gives ("127.0.0.1:8123/v1", "http"); a URL with a path keeps
    it; a bare host such as "127.0.0.1:8123/v1" is taken as it is."""
    if "://" not in api_host:
        return api_host.rstrip("/"), protocol
    parts = urlsplit(api_host)
    path = parts.path.rstrip("/") or "/v1"
    return parts.netloc + path, parts.scheme


def _js(value: Any) -> str:
    """`value` as a JavaScript literal that is safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c")


def _page(
    mode: str, write_key: str, origin: str, cdn: dict[str, Any], load: dict[str, Any], page_call: bool
) -> str:
    page = "analytics.page();" if page_call else ""
    ready = "analytics.ready(function () { window.analyticsReady = true; });"
    if mode == "standalone":
        # The Segment snippet, reduced: a buffer of calls the bundle replays once it has loaded.
        script = (
            "<script>!function(){var a=window.analytics=[];"
            'a.methods=["track","page","identify","group","alias","screen","reset","ready","on","off",'
            '"once","debug","setAnonymousId","addSourceMiddleware","addIntegrationMiddleware"];'
            "a.factory=function(m){return function(){var e=Array.prototype.slice.call(arguments);"
            "e.unshift(m);a.push(e);return a}};"
            "for(var i=0;i<a.methods.length;i++){var k=a.methods[i];a[k]=a.factory(k)}"
            f"a._writeKey={_js(write_key)};a._cdn={_js(origin)};"
            f'a._loadOptions={_js(load)};a.SNIPPET_VERSION="5.2.1";'
            f"{ready}{page}}}();</script>"
            '<script async src="/analytics-next/bundles/standalone.js"></script>'
        )
    else:
        settings = {"writeKey": write_key, "cdnURL": origin, "cdnSettings": cdn}
        script = (
            '<script src="/analytics-next/bundles/index.js"></script><script>'
            f"window.analytics = AnalyticsNext.AnalyticsBrowser.load({_js(settings)}, "
            f"{_js(load)});{ready}{page}</script>"
        )
    return f"<!doctype html><meta charset=utf-8><title>Shop</title><h1>Shop</h1>{script}"


@contextlib.asynccontextmanager
async def serve_analytics_next(
    write_key: str,
    api_host: str,
    *,
    protocol: str = "http",
    mode: Literal["standalone", "umd"] = "standalone",
    load_options: Mapping[str, Any] | None = None,
    segment_io: Mapping[str, Any] | None = None,
    cdn_settings: Mapping[str, Any] | None = None,
    page_call: bool = True,
    port: int | None = None,
) -> AsyncIterator[str]:
    """Serve, on a loopback port of its own, a page that loads analytics-next with `write_key`, sending to
    `api_host` (see `_segment_io`); yields the page's URL. The page sets `window.analyticsReady` once loaded.

    - mode "standalone": the snippet and dist/umd/standalone.js; the bundle fetches its CDN settings from
      this server (`/v1/projects/<writeKey>/settings`) and lazy chunks from `/analytics-next/bundles/`.
    - mode "umd": dist/umd/index.js and `AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL,
      cdnSettings}, options)`: no settings fetch.

    apiHost and protocol go in both the CDN settings and the load options' `integrations["Segment.io"]`:
    the load options' apiHost is also where the library's own metrics go (`/m`, every 30 s; default to
    api.segment.io), and those are off unless `cdn_settings` gives `metrics`. `segment_io` adds to the
    Segment.io options (e.g. `{"deliveryStrategy": {"strategy": "batching", "config": {"size": 3}}}`);
    `load_options` adds other load options, `cdn_settings` other CDN settings.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from tests.support.server import serving
    from touchflow.temporal import free_port

    npm_ci()
    if not (ANALYTICS_NEXT_UMD / "standalone.js").is_file():
        pytest.fail(f"{ANALYTICS_NEXT_UMD / 'standalone.js'} is missing after npm ci")
    host, scheme = _segment_io(api_host, protocol)
    segment = {"apiHost": host, "protocol": scheme, **(segment_io or {})}
    cdn: dict[str, Any] = {
        "integrations": {"Segment.io": {"apiKey": write_key, **segment}},
        "metrics": {"sampleRate": 0},
        "plan": {},
        "remotePlugins": [],
    }
    cdn.update(cdn_settings or {})
    load = dict(load_options or {})
    load["integrations"] = {**load.get("integrations", {}), "Segment.io": segment}
    served: list[str] = []

    async def page(request: Request) -> HTMLResponse:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return HTMLResponse(_page(mode, write_key, origin, cdn, load, page_call))

    async def bundle(request: Request) -> Response:
        name = request.path_params["name"]
        found = ANALYTICS_NEXT_UMD / name
        if "/" in name or name.startswith(".") or not found.is_file():
            return Response(status_code=404)
        served.append(name)
        return FileResponse(found, media_type="application/javascript")

    async def settings(request: Request) -> Response:
        if request.path_params["key"] != write_key:
            return JSONResponse({"error": "unknown write key"}, status_code=404)
        return JSONResponse(cdn)

    async def no_icon(_: Request) -> Response:
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/analytics-next/bundles/{name}", bundle),
            Route("/v1/projects/{key}/settings", settings),
            Route("/favicon.ico", no_icon),
        ]
    )
    async with serving(app, port=port or free_port()) as url:
        yield url + "/"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        _missing(
            "Chromium is missing at /usr/bin/chromium: install it with "
            "`apt-get update && apt-get install -y chromium` (as root)"
        )


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's headless Chromium through Playwright (which cannot download a browser here)."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def outside_requests(context: Any) -> list[str]:
    """Record ("METHOD URL") every request of a Playwright browser context to a host off the loopback, for
    the test to assert the list stays empty. It listens only: intercepting (`context.route`) would make
    Playwright answer CORS preflights itself, hiding whether the API under test answers them. Under
    `chromium()` such requests fail anyway: no other name resolves."""
    outside: list[str] = []

    def seen(request: Any) -> None:
        if urlsplit(request.url).hostname not in LOOPBACK:
            outside.append(f"{request.method} {request.url}")

    context.on("request", seen)
    return outside
