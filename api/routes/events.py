"""Event ingestion: validated, stored once (the `id` is the idempotency key), relayed to journeys."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from pydantic import TypeAdapter, ValidationError

from touchflow.api.deps import Ingest, IngestKeyDep, RegistryDep, RelayDep, SettingsDep, StoreDep, charge
from touchflow.api.errors import describe_errors
from touchflow.models import BatchAck, BatchItemResult, EventAck, EventIn, IngestStatus

router = APIRouter(prefix="/v1/events", tags=["events"])

_EVENTS = TypeAdapter(list[EventIn])
_BATCH_DOC = "Up to TOUCHFLOW_MAX_BATCH_SIZE (default 1,000) events, each shaped like `POST /v1/events`."


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=EventAck, dependencies=[Ingest])
async def post_event(body: EventIn, store: StoreDep, relay: RelayDep, registry: RegistryDep) -> EventAck:
    """Accept one event. A repeated `id` is answered `duplicate` and changes nothing.

    An event for a customer id never seen creates a bare profile, filled in later by `POST /v1/customers`.
    """
    [result] = await asyncio.to_thread(store.ingest_events, [body], registry.routed)
    if result is IngestStatus.ACCEPTED:
        relay.wake()
    return EventAck(id=body.id, status=result)


@router.post("/batch", response_model=BatchAck)
async def post_batch(
    request: Request,
    key: IngestKeyDep,
    store: StoreDep,
    relay: RelayDep,
    registry: RegistryDep,
    settings: SettingsDep,
    events: Annotated[list[dict[str, Any]], Body(embed=True, description=_BATCH_DOC)],
) -> Response:
    """Accept many events at once; each is judged on its own.

    Valid events are stored even when others in the batch are not: every item's result names its `index`,
    its status (`accepted`, `duplicate`, `rejected`) and, when rejected, what to fix. Resend only the
    rejected ones; resending the whole batch is safe too (the rest come back as duplicates).
    """
    if len(events) > settings.max_batch_size:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"a batch holds at most {settings.max_batch_size} events; this one has {len(events)}: split it",
        )
    # Each event counts toward the key's rate limit; a batch that does not fit is refused whole.
    await charge(request, key, max(1, len(events)))
    valid: list[tuple[int, EventIn]] = []
    results: list[BatchItemResult] = []
    try:
        # The usual case, a clean batch, in one pass; only a batch with errors is judged item by item.
        valid = list(enumerate(_EVENTS.validate_python(events)))
    except ValidationError:
        for index, raw in enumerate(events):
            try:
                valid.append((index, EventIn.model_validate(raw)))
            except ValidationError as exc:
                results.append(
                    BatchItemResult(
                        index=index,
                        id=raw.get("id") if isinstance(raw.get("id"), str) else None,
                        status=IngestStatus.REJECTED,
                        errors=describe_errors(exc.errors()),
                    )
                )
    statuses = await asyncio.to_thread(store.ingest_events, [e for _, e in valid], registry.routed)
    for (index, event), result in zip(valid, statuses, strict=True):
        results.append(BatchItemResult(index=index, id=event.id, status=result))
    results.sort(key=lambda r: r.index)
    accepted = sum(r.status is IngestStatus.ACCEPTED for r in results)
    if accepted:
        relay.wake()
    ack = BatchAck(
        accepted=accepted,
        duplicates=sum(r.status is IngestStatus.DUPLICATE for r in results),
        rejected=sum(r.status is IngestStatus.REJECTED for r in results),
        results=results,
    )
    # Serialised once here: FastAPI would validate the thousand results over again on the way out.
    return Response(ack.model_dump_json(), media_type="application/json")
