"""Event ingestion: validated, stored once (the `id` is the idempotency key), relayed to journeys."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from touchflow import tracing
from touchflow.api.deps import Ingest, IngestKeyDep, RegistryDep, SettingsDep, charge
from touchflow.api.errors import describe_errors
from touchflow.metrics import ApiMetrics
from touchflow.models import (
    WORKFLOW_ID_MAX_LENGTH,
    BatchAck,
    BatchItemResult,
    EventAck,
    EventIn,
    Ingested,
    IngestStatus,
    entry_key_problem,
    storable_text,
)
from touchflow.workflows.registry import Registry

router = APIRouter(prefix="/v1/events", tags=["events"])

_EVENTS = TypeAdapter(list[EventIn])
_BATCH_DOC = "Up to TOUCHFLOW_MAX_BATCH_SIZE (default 1,000) events, each shaped like `POST /v1/events`."


def entry_key_errors(event: EventIn, registry: Registry) -> list[dict[str, Any]]:
    """The event's values of journey keys that could not name a run, as validation errors.

    A journey keyed by a property (`cart_id`) puts its value in workflow ids and `journey_entries`: only the
    registry knows which properties those are, so this is judged here, after the model's own checks."""
    errors: list[dict[str, Any]] = []
    for spec in registry.values():
        if spec.key is None or event.name not in spec.events() or event.properties.get(spec.key) is None:
            continue
        value = event.properties[spec.key]
        problem = entry_key_problem(value)
        if problem is None:
            size = len(spec.workflow_id(event.customer_id, str(value)))
            if size > WORKFLOW_ID_MAX_LENGTH:
                problem = (
                    f"makes the workflow id {spec.name}:<customer_id>:<{spec.key}> {size} characters long, "
                    f"over {WORKFLOW_ID_MAX_LENGTH}: use a shorter {spec.key} or customer id"
                )
        if problem is not None:
            msg = f"is the key of journey {spec.name}'s runs, so it {problem}"
            loc = ("body", "properties", spec.key)
            if all(error["loc"] != loc for error in errors):
                errors.append({"type": "entry_key", "loc": loc, "msg": msg, "input": value})
    return errors


async def ingest(request: Request, events: Sequence[EventIn]) -> list[Ingested]:
    """Store events (`store.events.ingest`, in a thread), count each by name and status, and wake the relay
    when one was accepted: what every ingestion path (these routes, the Segment API) does."""
    state = request.app.state
    # The request's trace goes on with the outbox rows: the relay's span continues it (tracing on).
    results: list[Ingested] = await asyncio.to_thread(
        state.store.events.ingest, events, state.registry.routed, tracing.current_traceparent()
    )
    metrics: ApiMetrics = state.metrics
    for event, result in zip(events, results, strict=True):
        metrics.count_event(event.name, result.status.value)
    if any(result.status is IngestStatus.ACCEPTED for result in results):
        state.relay.wake()
    return results


def count_rejected(request: Request, name: object) -> None:
    metrics: ApiMetrics = request.app.state.metrics
    metrics.count_event(name, IngestStatus.REJECTED.value)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventAck,
    responses={status.HTTP_409_CONFLICT: {"description": "The `id` is taken by another event."}},
    dependencies=[Ingest],
)
async def post_event(request: Request, body: EventIn, registry: RegistryDep) -> EventAck:
    """Accept one event. The same event sent again is answered `duplicate` and changes nothing; an `id`
    already taken by another event (another customer, name or properties) is 409.

    An event for a customer id never seen creates a bare profile, filled in later by `POST /v1/customers`.
    """
    if errors := entry_key_errors(body, registry):
        raise RequestValidationError(errors, body=body.model_dump())  # counted by the 422's handler
    [result] = await ingest(request, [body])
    if result.status is IngestStatus.CONFLICT:
        raise HTTPException(status.HTTP_409_CONFLICT, result.reason)
    return EventAck(id=body.id, status=result.status)


@router.post("/batch", response_model=BatchAck)
async def post_batch(
    request: Request,
    key: IngestKeyDep,
    registry: RegistryDep,
    settings: SettingsDep,
    events: Annotated[list[dict[str, Any]], Body(embed=True, description=_BATCH_DOC)],
) -> Response:
    """Accept many events at once; each is judged on its own.

    Valid events are stored even when others in the batch are not: every item's result names its `index`,
    its status (`accepted`, `duplicate`, `conflict`, `rejected`) and, when conflicting or rejected, what
    to fix. Resend only the rejected ones; resending the whole batch is safe too (the rest come back as
    duplicates).
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
                count_rejected(request, raw.get("name"))
                results.append(
                    BatchItemResult(
                        index=index,
                        id=raw.get("id") if storable_text(raw.get("id")) else None,
                        status=IngestStatus.REJECTED,
                        errors=describe_errors(exc.errors()),
                    )
                )
    keyed = [(index, event, entry_key_errors(event, registry)) for index, event in valid]
    valid = [(index, event) for index, event, errors in keyed if not errors]
    for _, event, errors in keyed:
        if errors:
            count_rejected(request, event.name)
    results += [
        BatchItemResult(
            index=index, id=event.id, status=IngestStatus.REJECTED, errors=describe_errors(errors)
        )
        for index, event, errors in keyed
        if errors
    ]
    statuses = await ingest(request, [e for _, e in valid])
    for (index, event), result in zip(valid, statuses, strict=True):
        reasons = [result.reason] if result.reason else []
        results.append(BatchItemResult(index=index, id=event.id, status=result.status, errors=reasons))
    results.sort(key=lambda r: r.index)
    ack = BatchAck(
        accepted=sum(r.status is IngestStatus.ACCEPTED for r in results),
        duplicates=sum(r.status is IngestStatus.DUPLICATE for r in results),
        conflicts=sum(r.status is IngestStatus.CONFLICT for r in results),
        rejected=sum(r.status is IngestStatus.REJECTED for r in results),
        results=results,
    )
    # Serialised once here: FastAPI would validate the thousand results over again on the way out.
    return Response(ack.model_dump_json(), media_type="application/json")
