"""Customer profiles: upsert, and a profile with its recent events and deliveries."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.service import RPCError

from touchflow.api.deps import Admin, Ingest, Read, RegistryDep, RelayDep, SettingsDep, StoreDep
from touchflow.api.period import PeriodDep
from touchflow.models import (
    CustomerDetail,
    CustomerIn,
    CustomerPublic,
    DeliveryPublic,
    Erasure,
    EventPublic,
    Timeline,
    is_anonymous,
)
from touchflow.segments import LIFECYCLE_PREFIX
from touchflow.temporal import TemporalUnavailable
from touchflow.timeline import MAX_LIMIT, customer_timeline

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post(
    "",
    dependencies=[Ingest],
    response_model=CustomerPublic,
    responses={201: {"description": "Created"}, 200: {"description": "Updated"}},
)
async def upsert_customer(body: CustomerIn, store: StoreDep, response: Response) -> CustomerPublic:
    """Create or update a profile. Fields left out keep their value; `attributes` merge key by key."""
    customer, created = await asyncio.to_thread(store.customers.upsert, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return CustomerPublic.model_validate(customer)


@router.delete(
    "/{customer_id}",
    response_model=Erasure,
    dependencies=[Admin],
    responses={409: {"description": "An anonymous id merged into a customer: erase that customer"}},
)
async def erase_customer(customer_id: str, store: StoreDep, relay: RelayDep) -> Erasure:
    """Erase a customer: their profile, events, inbox, devices and engagement go, their journeys end, and
    every journey history Temporal kept of them is deleted.

    Deliveries and journey entries stay as anonymous counts for the funnels. If Temporal cannot be reached
    the answer is 503 and nothing is deleted: try again. The store goes first (so a relay can start nothing
    new for them), then Temporal: should Temporal fail between the two, the answer is 503 too, and repeating
    the DELETE finishes the sweep. An anonymous id merged into a customer since is answered 409, naming
    that customer (whose erasure takes the visitor's history and the link); nothing is deleted.
    """
    if is_anonymous(customer_id) and (
        known := await asyncio.to_thread(store.identities.known_as, customer_id)
    ):
        # The visitor's history is the customer's now: erasing the anonymous id would take only the link.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{customer_id!r} was merged into customer {known!r}: erase that customer; nothing was deleted",
        )
    customer = await asyncio.to_thread(store.customers.get, customer_id)
    try:
        router_ = await relay.router()
        await router_.client.workflow_service.get_system_info(GetSystemInfoRequest())
    except (RPCError, TemporalUnavailable) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"could not reach Temporal to end the customer's journeys ({exc}); nothing was deleted: "
            "try again",
        ) from None
    workflow_ids = await asyncio.to_thread(store.journeys.workflow_ids_of, customer_id)
    removed = await asyncio.to_thread(store.erase, customer_id) if customer is not None else {}
    try:
        ended, deleted = await router_.erase_customer_journeys(
            customer_id, reason="customer erased", workflow_ids=workflow_ids
        )
    except RPCError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the profile is erased but Temporal failed while ending its journeys ({exc.message}): "
            "repeat the DELETE to finish",
        ) from None
    if customer is None and not (ended or deleted):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer with id {customer_id!r}")
    return Erasure(customer_id=customer_id, journeys_ended=ended, histories_deleted=deleted, removed=removed)


@router.get("/{customer_id}", response_model=CustomerDetail, dependencies=[Read])
async def get_customer(customer_id: str, store: StoreDep) -> CustomerDetail:
    """A profile with its 50 newest events and deliveries."""
    customer = await asyncio.to_thread(store.customers.get, customer_id)
    if customer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer with id {customer_id!r}")
    events, deliveries, memberships = await asyncio.gather(
        asyncio.to_thread(store.events.of_customer, customer_id),
        asyncio.to_thread(store.deliveries.of_customer, customer_id),
        asyncio.to_thread(store.segments.of_customer, customer.id),
    )
    segments = [m.segment for m in memberships]
    stages = [name.removeprefix(LIFECYCLE_PREFIX) for name in segments if name.startswith(LIFECYCLE_PREFIX)]
    return CustomerDetail(
        customer=CustomerPublic.model_validate(customer),
        events=[EventPublic.model_validate(e) for e in events],
        deliveries=[DeliveryPublic.model_validate(d) for d in deliveries],
        segments=segments,
        lifecycle_stage=stages[0] if stages else None,
    )


@router.get("/{customer_id}/timeline", response_model=Timeline, dependencies=[Read])
async def get_timeline(
    customer_id: str,
    store: StoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
    period: PeriodDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> Timeline:
    """Everything that happened to a customer, newest first: events, journeys entered and how they ended,
    every touchpoint with its channel and outcome (and the conversion credited to it), segment and
    lifecycle-stage changes; with their consents as they are now. In cursor pages of `limit`."""
    return await customer_timeline(
        store,
        registry,
        settings.attribution_window,
        customer_id,
        limit=limit,
        cursor=cursor,
        since=period.since,
        until=period.until,
    )
