"""The dev inbox page: mail caught by `touchflow dev`'s local SMTP server, readable in a browser."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from touchflow.api.deps import SettingsDep

router = APIRouter(prefix="/dev/mail", tags=["dev"], include_in_schema=False)


def _mail_dir(settings: SettingsDep) -> Path:
    assert settings.dev_mail_dir is not None
    return settings.dev_mail_dir


def _read(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@router.get("", response_class=HTMLResponse)
def list_mail(settings: SettingsDep) -> str:
    files = sorted(_mail_dir(settings).glob("*.eml"), reverse=True)[:200]
    rows = []
    for path in files:
        message = _read(path)
        rows.append(
            f"<tr><td>{escape(str(message['Date']))}</td><td>{escape(str(message['To']))}</td>"
            f"<td><a href='/dev/mail/{escape(path.name)}'>{escape(str(message['Subject']))}</a></td></tr>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>touchflow dev inbox</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 12px}</style>"
        f"<h1>Dev inbox</h1><p>{len(files)} message(s), newest first.</p>"
        f"<table><tr><th>Date</th><th>To</th><th>Subject</th></tr>{''.join(rows)}</table>"
    )


@router.get("/{name}", response_class=HTMLResponse)
def show_mail(name: str, settings: SettingsDep) -> Response:
    path = _mail_dir(settings) / name
    if "/" in name or not name.endswith(".eml") or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    message = _read(path)
    html = message.get_body(("html",))
    if html is not None:
        return HTMLResponse(html.get_content())
    text = message.get_body(("plain",))
    return PlainTextResponse(text.get_content() if text is not None else path.read_text())
