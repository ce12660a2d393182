"""Provider webhooks: no API key (the provider signs instead); each provider file maps its own events."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status

from touchflow.api.deps import SettingsDep, StoreDep
from touchflow.channels.zalo_zns import (
    Ignored,
    WebhookError,
    WebhookSignatureError,
    ZaloZns,
    parse_webhook,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)


@router.post(
    "/zalo",
    responses={
        401: {"description": "X-ZEvent-Signature does not match, or the event is too old or too new"},
        422: {"description": "the body is not a JSON object (so nothing Zalo signed)"},
    },
)
async def zalo_webhook(request: Request, settings: SettingsDep, store: StoreDep) -> dict[str, str]:
    """Zalo OA events. `user_received_message` marks a sent ZNS delivered.

    Any other correctly signed, fresh event is answered 200 and ignored, even one with a field we cannot
    read: Zalo turns off a webhook that keeps failing, and a retry would fail the same way.
    """
    secret = settings.zalo_oa_secret_key.get_secret_value()
    if not settings.zalo_app_id or not secret:
        # Not a server fault: this deployment simply has no Zalo webhook.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "Zalo webhooks are off: set TOUCHFLOW_ZALO_APP_ID and TOUCHFLOW_ZALO_OA_SECRET_KEY",
        )
    body = await request.body()
    try:
        receipt = parse_webhook(
            body,
            request.headers.get("X-ZEvent-Signature"),
            app_id=settings.zalo_app_id,
            oa_secret_key=secret,
            now=datetime.now(UTC),
            max_age=settings.zalo_webhook_max_age,
        )
    except WebhookSignatureError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    except WebhookError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if isinstance(receipt, Ignored):
        log.info("zalo event ignored", extra={"reason": receipt.reason})
        return {"status": "ignored"}
    delivery = await asyncio.to_thread(
        store.deliveries.mark_delivered, ZaloZns.name, receipt.msg_id, receipt.delivered_at
    )
    if delivery is None:
        log.info("zalo receipt for an unknown message", extra={"msg_id": receipt.msg_id})
        return {"status": "unknown message"}
    return {"status": "delivered"}
