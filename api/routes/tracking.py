"""Opens and clicks: a one-pixel GIF in email, and signed redirect links, recorded against the delivery.

Links are signed with TOUCHFLOW_SECRET_KEY over the delivery id and the destination, so the redirect goes only
where a message pointed (no open redirect) and a forged link records nothing; and only to an http(s) address
on TOUCHFLOW_LINK_DOMAINS (when set), judged again at the click.
"""

from __future__ import annotations

import asyncio
import base64

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import RedirectResponse

from touchflow.api.deps import SettingsDep, SignerDep, StoreDep
from touchflow.signing import Purpose
from touchflow.urls import link_allowed

router = APIRouter(prefix="/t", tags=["tracking"], include_in_schema=False)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, max-age=0"}


def _delivery_id(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


@router.get("/o/{token}.gif")
async def opened(token: str, signer: SignerDep, store: StoreDep) -> Response:
    """Always the pixel (a mail client shows nothing either way); a valid token records an open."""
    delivery_id = _delivery_id(signer.unsign(Purpose.OPEN, token))
    if delivery_id is not None:
        await asyncio.to_thread(store.deliveries.record_engagement, delivery_id, "open")
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get("/c/{token}")
async def clicked(token: str, settings: SettingsDep, signer: SignerDep, store: StoreDep) -> RedirectResponse:
    signed = signer.unsign(Purpose.CLICK, token)
    delivery_text, _, url = (signed or "").partition("|")
    delivery_id = _delivery_id(delivery_text)
    # Checked again here: a link signed before TOUCHFLOW_LINK_DOMAINS was narrowed goes nowhere either.
    if delivery_id is None or not link_allowed(url, settings.link_domains):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this link is not valid")
    await asyncio.to_thread(store.deliveries.record_engagement, delivery_id, "click", url[:2000])
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND, headers=_NO_STORE)
