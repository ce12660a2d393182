"""Customer profiles: upsert, and a profile with its recent events and deliveries."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Response, status
from temporalio.service import RPCError

from touchflow.api.deps import Admin, Ingest, Read, RelayDep, StoreDep
from touchflow.models import (
    CustomerDetail,
    CustomerIn,
    CustomerPublic,
    DeliveryPublic,
    Erasure,
    EventPublic,
)
from touchflow.temporal import TemporalUnavailable

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post(
    "",
    dependencies=[Ingest],
    response_model=CustomerPublic,
    responses={201: {"description": "Created"}, 200: {"description": "Updated"}},
)
async def upsert_customer(body: CustomerIn, store: StoreDep, response: Response) -> CustomerPublic:
    """Create or update a profile. Fields left out keep their value; `attributes` merge key by key."""
    customer, created = await asyncio.to_thread(store.upsert_customer, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return CustomerPublic.model_validate(customer)


@router.delete("/{customer_id}", response_model=Erasure, dependencies=[Admin])
async def erase_customer(customer_id: str, store: StoreDep, relay: RelayDep) -> Erasure:
    """Erase a customer: end their journeys, delete their profile, events, inbox and devices.

    Deliveries and journey entries stay as anonymous counts for the funnels. If Temporal cannot be reached
    the answer is 503 and nothing is deleted: try again.
    """
    if await asyncio.to_thread(store.get_customer, customer_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer with id {customer_id!r}")
    try:
        router_ = await relay.router()
        ended = await router_.end_customer_journeys(customer_id, reason="customer erased")
    except (RPCError, TemporalUnavailable) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"could not end the customer's journeys ({exc}); nothing was deleted: try again",
        ) from None
    removed = await asyncio.to_thread(store.erase_customer, customer_id)
    return Erasure(customer_id=customer_id, journeys_ended=ended, removed=removed)


@router.get("/{customer_id}", response_model=CustomerDetail, dependencies=[Read])
async def get_customer(customer_id: str, store: StoreDep) -> CustomerDetail:
    """A profile with its 50 newest events and deliveries."""
    customer = await asyncio.to_thread(store.get_customer, customer_id)
    if customer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer with id {customer_id!r}")
    events, deliveries = await asyncio.gather(
        asyncio.to_thread(store.customer_events, customer_id),
        asyncio.to_thread(store.customer_deliveries, customer_id),
    )
    return CustomerDetail(
        customer=CustomerPublic.model_validate(customer),
        events=[EventPublic.model_validate(e) for e in events],
        deliveries=[DeliveryPublic.model_validate(d) for d in deliveries],
    )
