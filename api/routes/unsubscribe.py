"""Unsubscribe links: a confirmation page on GET (link scanners prefetch), RFC 8058 one-click on POST.

Links are signed (touchflow.signing) and never expire; rotating the secret keeps them working while the old
one is in TOUCHFLOW_PREVIOUS_SECRET_KEYS. Unsubscribing turns marketing off on
every channel (`consents.marketing = false`); transactional messages (receipts) still go out. Repeating it
is harmless.
"""

from __future__ import annotations

import asyncio
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from touchflow.api.deps import SettingsDep, SignerDep, StoreDep
from touchflow.signing import Purpose

router = APIRouter(tags=["unsubscribe"])

_TEXT = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop marketing messages from {brand}? Order and account messages still reach you.",
        "button": "Unsubscribe",
        "done": "You are unsubscribed. {brand} will not send you marketing messages any more.",
        "invalid": "This unsubscribe link is not valid. Please use the link from a recent message.",
    },
    "vi": {
        "title": "Hủy đăng ký",
        "ask": "Ngừng nhận tin tiếp thị từ {brand}? Bạn vẫn nhận tin về đơn hàng và tài khoản.",
        "button": "Hủy đăng ký",
        "done": "Bạn đã hủy đăng ký. {brand} sẽ không gửi tin tiếp thị cho bạn nữa.",
        "invalid": "Liên kết hủy đăng ký không hợp lệ. Vui lòng dùng liên kết trong tin nhắn gần đây.",
    },
}


def _page(language: str, brand: str, body: str, status_code: int = 200) -> HTMLResponse:
    text = _TEXT[language]
    return HTMLResponse(
        "<!doctype html><html lang='{lang}'><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>{title}</title><body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        "{body}</body></html>".format(lang=language, title=escape(text["title"]), body=body),
        status_code=status_code,
    )


async def _customer_language(store: StoreDep, customer_id: str | None) -> str:
    customer = await asyncio.to_thread(store.customers.get, customer_id) if customer_id else None
    locale = (customer.locale or "") if customer else ""
    return "vi" if locale.lower().startswith("vi") else "en"


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False)
async def confirm(token: str, settings: SettingsDep, signer: SignerDep, store: StoreDep) -> HTMLResponse:
    customer_id = signer.unsign(Purpose.UNSUBSCRIBE, token)
    language = await _customer_language(store, customer_id)
    text, brand = _TEXT[language], escape(settings.brand_name)
    if customer_id is None:
        return _page(language, brand, f"<p>{escape(text['invalid'])}</p>", 404)
    return _page(
        language,
        brand,
        f"<h1>{escape(text['title'])}</h1><p>{escape(text['ask']).format(brand=brand)}</p>"
        f"<form method='post'><input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        f"<button type='submit'>{escape(text['button'])}</button></form>",
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe(
    token: str, request: Request, settings: SettingsDep, signer: SignerDep, store: StoreDep
) -> HTMLResponse:
    """RFC 8058 one-click (`List-Unsubscribe=One-Click`) and the confirmation form both land here."""
    customer_id = signer.unsign(Purpose.UNSUBSCRIBE, token)
    language = await _customer_language(store, customer_id)
    text, brand = _TEXT[language], escape(settings.brand_name)
    if customer_id is None:
        return _page(language, brand, f"<p>{escape(text['invalid'])}</p>", 404)
    await asyncio.to_thread(store.customers.set_consents, customer_id, {"marketing": False})
    return _page(language, brand, f"<p>{escape(text['done']).format(brand=brand)}</p>")
