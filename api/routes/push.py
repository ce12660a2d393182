"""Web push: a customer's browser subscriptions (server to server: `ingest` key to write, `read` to list),
and the public VAPID key.

A site's service worker subscribes with the public key from `GET /v1/push/vapid-public-key`; the site's
backend then posts the browser's PushSubscription JSON here, for the customer who is signed in.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from touchflow.api.deps import Ingest, Read, SettingsDep, StoreDep
from touchflow.models import Identifier, PushSubscriptionIn, PushSubscriptionPublic
from touchflow.urls import push_endpoint_problem

router = APIRouter(prefix="/v1/customers/{customer_id}/push-subscriptions", tags=["push"])
public_router = APIRouter(prefix="/v1/push", tags=["push"])

CustomerId = Annotated[Identifier, Path(description="The customer the browser belongs to.")]


@router.post(
    "",
    dependencies=[Ingest],
    response_model=PushSubscriptionPublic,
    responses={201: {"description": "Created"}, 200: {"description": "Updated (same endpoint)"}},
)
async def save_subscription(
    customer_id: CustomerId,
    body: PushSubscriptionIn,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
) -> PushSubscriptionPublic:
    """Store a browser's subscription; a customer may have one per browser or device, at most
    20 (`store.push.save`): past that, the one saved least recently is dropped.

    Posting the same `endpoint` again updates it (new keys, or another customer now signed in there).
    The endpoint must be on a push service's host (TOUCHFLOW_PUSH_SERVICE_HOSTS); any other gets a 422.
    """
    refusal = push_endpoint_problem(body.endpoint, settings.push_service_hosts)
    if refusal is not None:
        _, problem = refusal
        raise RequestValidationError([{"loc": ("body", "endpoint"), "msg": problem, "type": "value_error"}])
    row, created = await asyncio.to_thread(store.push.save, customer_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return PushSubscriptionPublic.of(row)


@router.get("", response_model=list[PushSubscriptionPublic], dependencies=[Read])
async def list_subscriptions(customer_id: CustomerId, store: StoreDep) -> list[PushSubscriptionPublic]:
    """The customer's subscriptions; endpoints are shown by origin only (the full URL is a credential)."""
    rows = await asyncio.to_thread(store.push.of_customer, customer_id)
    return [PushSubscriptionPublic.of(row) for row in rows]


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Ingest])
async def delete_subscription(
    customer_id: CustomerId,
    store: StoreDep,
    endpoint: Annotated[str, Query(min_length=1, description="The subscription's endpoint URL.")],
) -> Response:
    """Forget a subscription, e.g. when the browser unsubscribed."""
    if not await asyncio.to_thread(store.push.delete, customer_id, endpoint):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"customer {customer_id!r} has no push subscription with this endpoint",
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class VapidPublicKey(BaseModel):
    public_key: str


@public_router.get("/vapid-public-key", response_model=VapidPublicKey)
async def vapid_public_key(request: Request, response: Response) -> VapidPublicKey:
    """The `applicationServerKey` a page passes to `pushManager.subscribe()`; public, so no API key.

    Any origin may read it (CORS `*`): the site's own pages fetch it straight from the browser.
    """
    response.headers["Access-Control-Allow-Origin"] = "*"
    key: str | None = request.app.state.vapid_public_key
    if key is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "web push is not configured: set TOUCHFLOW_VAPID_PRIVATE_KEY (see `touchflow vapid-keys`)",
        )
    return VapidPublicKey(public_key=key)
