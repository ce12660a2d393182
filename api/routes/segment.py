"""The Segment HTTP Tracking API: Segment's, RudderStack's and Customer.io's libraries send here unchanged.

`/v1/identify`, `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`, `/v1/batch`, `/v1/import` and
analytics.js's short paths (`/v1/t`, `/v1/b`, ...). Every accepted request is answered 200
`{"success": true}`: Segment's older libraries resend on anything else, a 202 included. A message that
cannot be used is dropped and logged (as Segment does), not a reason to refuse its batch; what it means is
`touchflow.segment`'s business.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import zlib
from base64 import b64decode
from collections import Counter
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from touchflow.api.deps import authenticate, charge
from touchflow.api.routes.events import entry_key_errors
from touchflow.apikeys import Scope
from touchflow.models import IngestStatus, utcnow
from touchflow.segment import SHORT_PATHS, MessageType, Translation, translate
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.storage.identities import Merged
from touchflow.workflows.registry import Registry

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["segment"])

BATCH_PATHS = ("batch", "import", "b")
MESSAGE_PATHS = {
    **{kind.value: kind for kind in MessageType},
    **{k: MessageType(v) for k, v in SHORT_PATHS.items()},
}
# analytics.js reports its own delivery metrics here (on by default); they are no customer's events.
METRICS_PATH = "/v1/m"
PATHS = frozenset([*(f"/v1/{name}" for name in (*BATCH_PATHS, *MESSAGE_PATHS)), METRICS_PATH])
# What analytics.js sends across origins (api/cors.py): it preflights every call for its Authorization.
CORS_HEADERS = ["Content-Type", "Authorization", "X-Retry-Count"]


def is_tracking_path(path: str) -> bool:
    return path in PATHS


_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            "text/plain": {
                "schema": {"type": "string", "description": "The same JSON, as analytics.js sends"}
            },
        },
    },
    "responses": {
        "400": {"description": "Not JSON, or over TOUCHFLOW_TRACK_MAX_MESSAGE_BYTES / _MAX_BATCH_BYTES"},
        "401": {"description": "No API key (Basic user name, Bearer, or `writeKey` in the body)"},
    },
}


async def _read(request: Request, limit: int, setting: str) -> Any:
    """The request's JSON (gzip undone when the request says so), or 400 naming what is wrong."""
    over = f"body over {limit} bytes ({setting})"
    raw = await request.body()
    if len(raw) > limit:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, over)
    if request.headers.get("content-encoding", "").strip().lower() == "gzip":
        unzip = zlib.decompressobj(wbits=31)
        try:
            raw = unzip.decompress(raw, limit + 1)
        except zlib.error:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "the body is not gzip, though Content-Encoding says it is"
            ) from None
        if len(raw) > limit or unzip.unconsumed_tail:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, over + " once unzipped")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, 'the body is a JSON object: a message, or {"batch": [...]}'
        )
    return body


def _presented_key(request: Request, body: dict[str, Any]) -> str | None:
    """The API key however a Segment library carries it: Basic (the key as user name, empty password),
    Bearer, or `writeKey` in the body (analytics.js)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, _ = b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return header  # a credential that is none of ours: counted as a failed guess
            return user
        return value.strip() if scheme.lower() == "bearer" else header
    write_key = body.get("writeKey")
    return write_key if isinstance(write_key, str) else None


async def _accept(request: Request, kind: MessageType | None) -> JSONResponse:
    settings: Settings = request.app.state.settings
    if kind is None:
        body = await _read(request, settings.track_max_batch_bytes, "TOUCHFLOW_TRACK_MAX_BATCH_BYTES")
    else:
        body = await _read(request, settings.track_max_message_bytes, "TOUCHFLOW_TRACK_MAX_MESSAGE_BYTES")
    key = await authenticate(request, _presented_key(request, body), Scope.INGEST)
    messages = body.get("batch") if kind is None else [body]
    if not isinstance(messages, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, 'a batch is {"batch": [messages]}')
    await charge(request, key, max(1, len(messages)))
    translation = translate(
        messages,
        received_at=utcnow(),
        sent_at=body.get("sentAt"),
        context=body.get("context"),
        kind=kind,
        max_message_bytes=settings.track_max_message_bytes,
    )
    counts = await _apply(request, translation)
    if translation.dropped:
        reasons = Counter(d.reason.split(":")[0] for d in translation.dropped)
        log.warning(
            "segment messages dropped", extra={"dropped": len(translation.dropped), "reasons": dict(reasons)}
        )
    dropped = [asdict(d) for d in translation.dropped]
    return JSONResponse({"success": True, **counts, "dropped": dropped})


async def _apply(request: Request, translation: Translation) -> dict[str, int]:
    """Profiles first (an identify creates the customer a merge folds into), then merges, then events."""
    store: Store = request.app.state.store
    registry: Registry = request.app.state.registry
    for _, profile in translation.profiles:
        await asyncio.to_thread(store.customers.upsert, profile)
    for merge in translation.merges:
        if merge.previous_id is not None and await asyncio.to_thread(
            store.customers.exists, merge.previous_id
        ):
            translation.drop(
                merge.index,
                "alias: previousId names a known customer; two known customers are never merged "
                "automatically (erase or update one of them instead)",
            )
            continue
        if (
            await asyncio.to_thread(store.identities.merge, merge.anonymous_id, merge.customer_id)
            is Merged.REFUSED
        ):
            translation.drop(
                merge.index,
                "identity: the anonymous id was merged into another customer already; it stays theirs",
            )
    events = []
    for index, event in translation.events:
        if errors := entry_key_errors(event, registry):
            translation.drop(index, f"{'.'.join(map(str, errors[0]['loc'][1:]))}: {errors[0]['msg']}")
        else:
            events.append((index, event))
    results = await asyncio.to_thread(store.events.ingest, [e for _, e in events], registry.routed)
    accepted = duplicates = 0
    for (index, _), result in zip(events, results, strict=True):
        if result.status is IngestStatus.ACCEPTED:
            accepted += 1
        elif result.status is IngestStatus.DUPLICATE:
            duplicates += 1
        else:
            translation.drop(index, result.reason or str(result.status))
    if accepted:
        request.app.state.relay.wake()
    translation.dropped.sort(key=lambda d: d.index)
    return {"events": accepted, "duplicates": duplicates, "profiles": len(translation.profiles)}


def _route(kind: MessageType | None) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        return await _accept(request, kind)

    return endpoint


for _path in BATCH_PATHS:
    router.add_api_route(
        f"/{_path}",
        _route(None),
        methods=["POST"],
        summary=f"Segment {_path}" if _path != "b" else "Segment batch (analytics.js short path)",
        include_in_schema=_path != "b",
        openapi_extra=_DOC,
    )
for _path, _kind in MESSAGE_PATHS.items():
    router.add_api_route(
        f"/{_path}",
        _route(_kind),
        methods=["POST"],
        summary=f"Segment {_kind.value}",
        include_in_schema=len(_path) > 1,
        openapi_extra=_DOC,
    )


@router.post(METRICS_PATH.removeprefix(router.prefix), include_in_schema=False)
async def library_metrics() -> JSONResponse:
    """analytics.js's own counters (`{"series": [...]}`): acknowledged and dropped, so a page that left its
    metrics on sees no errors."""
    return JSONResponse({"success": True})
