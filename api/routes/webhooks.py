"""Provider webhooks: no API key (the provider signs instead); each provider file maps its own events."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException, Request, status

from touchflow.api.deps import SettingsDep, StoreDep
from touchflow.channels.zalo_zns import WebhookError, WebhookSignatureError, ZaloZns, parse_webhook

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)


@router.post("/zalo", responses={401: {"description": "X-ZEvent-Signature does not match"}})
async def zalo_webhook(request: Request, settings: SettingsDep, store: StoreDep) -> dict[str, str]:
    """Zalo OA events. `user_received_message` marks a sent ZNS delivered; other events are ignored."""
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
        )
    except WebhookSignatureError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    except WebhookError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if receipt is None:
        return {"status": "ignored"}
    delivery = await asyncio.to_thread(
        store.mark_delivered, ZaloZns.name, receipt.msg_id, receipt.delivered_at
    )
    if delivery is None:
        log.info("zalo receipt for an unknown message", extra={"msg_id": receipt.msg_id})
        return {"status": "unknown message"}
    return {"status": "delivered"}
