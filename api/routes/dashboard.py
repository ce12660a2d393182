"""The dashboard at /dashboard: journeys, the journey map, the stage funnel and one customer's timeline, as
server-rendered pages (Jinja2, inline SVG, nothing loaded from elsewhere), for a person holding a `read` key.

Sign-in takes the key once and sets a signed, HttpOnly session cookie naming the key (never the key itself),
so removing a key from TOUCHFLOW_API_KEYS ends its sessions; scripts may send `Authorization: Bearer` instead.
Every page is a GET that changes nothing; the only writes are the login and logout forms (POST, with the
cookie SameSite=Lax). Every figure comes from the functions the JSON API serves, over the same period.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from touchflow.api.deps import RegistryDep, SettingsDep, StoreDep, authenticate, charge
from touchflow.api.period import RANGES, Period, period
from touchflow.api.routes.broadcasts import public_broadcast
from touchflow.apikeys import ApiKey, Scope
from touchflow.attribution import describe
from touchflow.errors import TouchflowError
from touchflow.insight import TEST, credits, journey_funnel, stage_funnel
from touchflow.models import JourneyFunnel, utcnow
from touchflow.settings import Settings
from touchflow.signing import Purpose, Signer
from touchflow.timeline import customer_timeline
from touchflow.vocabulary import Stage

SESSION_COOKIE = "touchflow_dashboard"
SESSION_TTL = timedelta(hours=12)
DEFAULT_RANGE = "30d"
SPARK_BUCKETS = 15
TEMPLATES = Path(__file__).resolve().parent.parent / "dashboard"

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def sparkline(values: Sequence[int], width: int = 120, height: int = 24) -> str:
    """The points of an SVG polyline drawing `values` left to right, scaled to the box."""
    if not values:
        return ""
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )


_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True))
_env.filters.update(number=_number, percent=_percent, segment=lambda text: quote(str(text), safe=""))
_env.globals.update(sparkline=sparkline, ranges=list(RANGES), urlencode=urlencode)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(request=request, path=request.url.path, **context)
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
    return HTMLResponse(html, status_code=status_code, headers=headers)


# -- who is looking --------------------------------------------------------------------------------------


def _signer(request: Request) -> Signer | None:
    signer: Signer | None = request.app.state.signer
    return signer


def _session_key(request: Request) -> ApiKey | None:
    """The `read` key the session cookie names, if the cookie is ours, current, and the key still exists."""
    cookie, signer = request.cookies.get(SESSION_COOKIE), _signer(request)
    if not cookie or signer is None:
        return None
    key_id = signer.unsign(Purpose.DASHBOARD_SESSION, cookie)
    keys: list[ApiKey] = request.app.state.api_keys
    return next((k for k in keys if k.id == key_id and k.allows(Scope.READ)), None)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def viewer(request: Request) -> ApiKey:
    """A `read` key, from `Authorization: Bearer` or the session cookie; else to the login page (a
    browser) or 401 (anything else)."""
    presented = request.headers.get("authorization")
    if presented is not None:
        key = await authenticate(request, presented.removeprefix("Bearer ").strip(), Scope.READ)
    else:
        found = _session_key(request)
        if found is None:
            if _wants_html(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                login = "/dashboard/login?" + urlencode({"next": target})
                raise HTTPException(status.HTTP_303_SEE_OTHER, "sign in", headers={"Location": login})
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "sign in at /dashboard/login, or send 'Authorization: Bearer <key>' with a key holding "
                "the 'read' scope",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = found
    await charge(request, key, 1)
    return key


Viewer = Depends(viewer)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of ours only (never another site)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None, signer=_signer(request))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """The login form: an API key with the `read` scope → the session cookie, then back where it was."""
    signer = _signer(request)
    try:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:
        error = "send the login form's fields only (api_key, next)"
        return render(request, "login.html", 422, next="/dashboard", error=error, signer=signer)
    presented = (form.get("api_key") or [""])[0].strip()
    target = _safe_next(next(iter(form.get("next", [])), None))
    if signer is None:
        error = "sessions need TOUCHFLOW_SECRET_KEY; set it, or send 'Authorization: Bearer <key>'"
        return render(request, "login.html", 503, next=target, error=error, signer=None)
    if not presented:
        return render(request, "login.html", 422, next=target, error="enter an API key", signer=signer)
    try:
        key = await authenticate(request, presented, Scope.READ)
    except HTTPException as exc:
        return render(request, "login.html", exc.status_code, next=target, error=exc.detail, signer=signer)
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        signer.sign(Purpose.DASHBOARD_SESSION, key.id, ttl=SESSION_TTL),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/dashboard",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/dashboard/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="lax")
    return response


# -- the period of a page --------------------------------------------------------------------------------

RangeQuery = Annotated[str | None, Query(alias="range")]
TimeText = Annotated[str | None, Query()]


def _when(name: str, text: str | None) -> datetime | None:
    """A time from the custom period's fields: ISO 8601; without a zone (a datetime-local field), UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{name}: a date and time like 2026-11-01T00:00 (UTC)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def page_period(range: RangeQuery = None, since: TimeText = None, until: TimeText = None) -> Period:
    if range is None and not since and not until:
        range = DEFAULT_RANGE
    try:
        return period(_when("since", since), _when("until", until), range)
    except TouchflowError as exc:
        raise HTTPException(422, str(exc)) from None


PagePeriod = Annotated[Period, Depends(page_period)]


def _context(settings: Settings, shown: Period) -> dict[str, Any]:
    return {"period": shown, "json_query": shown.query(), "settings": settings}


def _temporal_link(settings: Settings, query: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal_namespace)}/workflows?query={quote(query)}"


# -- the pages -------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse, dependencies=[Viewer])
async def overview(
    request: Request, store: StoreDep, registry: RegistryDep, settings: SettingsDep, shown: PagePeriod
) -> HTMLResponse:
    """Every journey (entered, active, converted, rate, revenue, entries over time), broadcasts, segments."""
    window = settings.attribution_window
    until = shown.until or utcnow()
    since = shown.since or until - RANGES[DEFAULT_RANGE]
    funnels = await asyncio.gather(
        *(
            journey_funnel(store, registry, registry[name], window, shown.since, shown.until)
            for name in registry
        )
    )
    histogram, ids, sizes, definitions, credited = await asyncio.gather(
        asyncio.to_thread(store.insight.entries_histogram, since, until, SPARK_BUCKETS),
        asyncio.to_thread(store.insight.broadcasts, shown.since, shown.until),
        asyncio.to_thread(store.insight.segment_sizes),
        asyncio.to_thread(store.segments.definitions),
        asyncio.to_thread(credits, store, registry, window, shown.since, shown.until),
    )
    broadcasts = []
    for broadcast_id in ids:
        public = await public_broadcast(store, broadcast_id)
        mine = [v for k, v in credited.items() if k[0] == f"broadcast:{broadcast_id}"]
        broadcasts.append((public, sum(n for n, _ in mine), round(sum(m for _, m in mine), 2)))
    segments = [(name, sizes.get(name, 0)) for name in definitions]
    return render(
        request,
        "overview.html",
        funnels=funnels,
        histogram={name: histogram.get(name, [0] * SPARK_BUCKETS) for name in registry},
        broadcasts=broadcasts,
        segments=segments,
        rule=describe(window),
        **_context(settings, shown),
    )


def _by_stage(funnel: JourneyFunnel) -> list[tuple[str, list[Any]]]:
    """The steps in columns of their stage, stages in the journey's own order of first use."""
    columns: dict[str, list[Any]] = {}
    for step in funnel.steps:
        columns.setdefault(step.stage, []).append(step)
    order = [s.value for s in Stage]
    return sorted(columns.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))


@router.get("/journeys/{name}", response_class=HTMLResponse, dependencies=[Viewer])
async def journey_map(
    request: Request,
    name: str,
    store: StoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
    shown: PagePeriod,
) -> HTMLResponse:
    """The journey map: steps by stage, each step's funnel and losses, A/B verdicts, its runs in Temporal."""
    if name not in registry:
        return render(
            request, "error.html", 404, message=f"no journey {name!r}; journeys: {', '.join(registry)}"
        )
    funnel = await journey_funnel(
        store, registry, registry[name], settings.attribution_window, shown.since, shown.until
    )
    losses = [(s.step, 1 - s.to_next) for s in funnel.steps if s.to_next is not None]
    worst = max(losses, key=lambda loss: loss[1])[0] if losses and max(x[1] for x in losses) > 0 else None
    top = max([funnel.entered, *(s.reached for s in funnel.steps)]) or 1
    return render(
        request,
        "journey.html",
        funnel=funnel,
        columns=_by_stage(funnel),
        worst=worst,
        top=top,
        rule=describe(settings.attribution_window),
        test=TEST,
        temporal=_temporal_link(settings, f'WorkflowType="{name}"'),
        **_context(settings, shown),
    )


@router.get("/stages", response_class=HTMLResponse, dependencies=[Viewer])
async def stages(
    request: Request, store: StoreDep, registry: RegistryDep, settings: SettingsDep, shown: PagePeriod
) -> HTMLResponse:
    """The stage funnel across journeys and broadcasts: touchpoints and customers per stage, who moved on."""
    rows = await stage_funnel(store, registry, settings.attribution_window, shown.since, shown.until)
    top = max([r.customers for r in rows] + [1])
    return render(
        request,
        "stages.html",
        rows=rows,
        top=top,
        rule=describe(settings.attribution_window),
        **_context(settings, shown),
    )


@router.get("/customers", response_class=HTMLResponse, dependencies=[Viewer])
async def find_customer(request: Request, store: StoreDep, settings: SettingsDep, q: str = "") -> Response:
    """The search box: an id (or its start) or an email; one match opens that customer's page."""
    text = q.strip()[:200]
    found = await asyncio.to_thread(store.insight.find_customers, text) if text else []
    if len(found) == 1:
        return RedirectResponse(f"/dashboard/customers/{quote(found[0], safe='')}", status.HTTP_303_SEE_OTHER)
    return render(request, "customers.html", q=text, found=found)


@router.get("/customers/{customer_id}", response_class=HTMLResponse, dependencies=[Viewer])
async def customer_page(
    request: Request,
    customer_id: str,
    store: StoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
    shown: PagePeriod,
    cursor: str | None = None,
) -> HTMLResponse:
    """One customer's timeline, newest first, with links to their runs in the Temporal UI."""
    try:
        timeline = await customer_timeline(
            store,
            registry,
            settings.attribution_window,
            customer_id,
            cursor=cursor,
            since=shown.since,
            until=shown.until,
        )
    except TouchflowError as exc:
        return render(request, "error.html", exc.http_status, message=str(exc))
    escaped = customer_id.replace("\\", "\\\\").replace('"', '\\"')
    return render(
        request,
        "customer.html",
        timeline=timeline,
        temporal=_temporal_link(settings, f'CustomerId="{escaped}"'),
        older="?" + urlencode({**request.query_params, "cursor": timeline.next_cursor})
        if timeline.next_cursor
        else None,
        **_context(settings, shown),
    )


def bar(value: int, top: int, width: float = 100.0) -> float:
    """A bar's length for `value` out of `top` (at least a sliver when not zero)."""
    if not value or not top:
        return 0.0
    return max(width * value / top, 1.5)


_env.globals.update(bar=bar, isfinite=math.isfinite)
