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
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from touchflow.api.deps import authenticate, charge
from touchflow.api.routes.events import entry_key_errors, ingest
from touchflow.apikeys import Scope
from touchflow.models import IngestStatus, utcnow
from touchflow.segment import SHORT_PATHS, MessageType, Translation, translate
from touchflow.settings import Settings
from touchflow.signing import Signer
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
    except RecursionError:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "the body nests JSON deeper than any message does"
        ) from None
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
    key = await authenticate(request, _presented_key(request, body), Scope.TRACK)
    messages = body.get("batch") if kind is None else [body]
    if not isinstance(messages, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, 'a batch is {"batch": [messages]}')
    await charge(request, key, max(1, len(messages)))
    translation = translate(
        messages,
        received_at=utcnow(),
        sent_at=body.get("sentAt"),
        context=_with_ip(request, body.get("context")),
        kind=kind,
        max_message_bytes=settings.track_max_message_bytes,
    )
    trusted = key.allows(Scope.INGEST)
    if not trusted:
        await _hold_to_claims(request, translation)
    counts = await _apply(request, translation, trusted=trusted)
    if translation.dropped:
        reasons = Counter(d.code for d in translation.dropped)
        log.warning(
            "segment messages dropped", extra={"dropped": len(translation.dropped), "reasons": dict(reasons)}
        )
    dropped = [{"index": d.index, "reason": d.reason} for d in translation.dropped]
    return JSONResponse({"success": True, **counts, "dropped": dropped})


def _with_ip(request: Request, context: Any) -> Any:
    """The batch's context with the sender's address when it names none: Segment adds `context.ip` on
    its side, and analytics.js leaves it to the server."""
    if request.client is None or (isinstance(context, dict) and "ip" in context):
        return context
    return {**(context if isinstance(context, dict) else {}), "ip": request.client.host}


async def _hold_to_claims(request: Request, translation: Translation) -> None:
    """A `track` key sits in browser pages, so anyone may hold it: what it says for a known customer who is
    stored already (their profile, a visitor merged into them) needs that customer's token in
    `context.touchflow_token`. For a customer not stored yet (a sign-up) it is the first word."""
    store: Store = request.app.state.store
    signer: Signer | None = request.app.state.signer
    for claim in translation.claims:
        token, customer_id = claim.token, claim.customer_id
        if token is not None and signer is not None and signer.check_customer_token(customer_id, token):
            continue
        if await asyncio.to_thread(store.customers.exists, claim.customer_id):
            translation.withdraw(claim.index)
            translation.drop(
                claim.index,
                "a browser key (scope track) changes a stored customer's profile or identity only with their "
                "token in context.touchflow_token (the onsite inbox token of that id)",
                "unverified",
            )


async def _apply(request: Request, translation: Translation, *, trusted: bool) -> dict[str, int]:
    """Profiles first (an identify creates the customer a merge folds into), then merges, then events."""
    store: Store = request.app.state.store
    registry: Registry = request.app.state.registry
    for _, profile in translation.profiles:
        await asyncio.to_thread(store.customers.upsert, profile)
    for merge in translation.merges:
        if merge.previous_id is not None and await asyncio.to_thread(
            store.customers.exists, merge.previous_id
        ):
            # A browser key learns nothing of who is a customer from the answer.
            translation.drop(
                merge.index,
                "alias: previousId names a known customer; two known customers are never merged "
                "automatically (erase or update one of them instead)"
                if trusted
                else "alias: not merged",
                "known_previous_id",
            )
            continue
        if (
            await asyncio.to_thread(store.identities.merge, merge.anonymous_id, merge.customer_id)
            is Merged.REFUSED
        ):
            translation.drop(
                merge.index,
                "identity: the anonymous id was merged into another customer already; it stays theirs",
                "merged_elsewhere",
            )
    events = []
    for index, event in translation.events:
        if errors := entry_key_errors(event, registry):
            where = ".".join(map(str, errors[0]["loc"][1:]))
            translation.drop(index, f"{where}: {errors[0]['msg']}", "entry_key")
        else:
            events.append((index, event))
    results = await ingest(request, [e for _, e in events])
    accepted = duplicates = 0
    for (index, _), result in zip(events, results, strict=True):
        if result.status is IngestStatus.ACCEPTED:
            accepted += 1
        elif result.status is IngestStatus.DUPLICATE:
            duplicates += 1
        else:
            translation.drop(index, result.reason or str(result.status), "conflict")
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
