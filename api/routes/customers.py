"""Customer profiles: upsert, and a profile with its recent events and deliveries."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Response, status

from api.deps import Ingest, Read, StoreDep
from touchflow.models import (
    CustomerDetail,
    CustomerIn,
    CustomerPublic,
    DeliveryPublic,
    EventPublic,
)

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
