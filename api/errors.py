"""Errors as a person reads them: validation (`events.3.customer_id: Field required`) and every
`touchflow.errors.TouchflowError` that reaches a route, answered with its `http_status` and message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from touchflow.errors import TouchflowError


def _printable(part: object) -> str | int:
    """A location part as JSON can carry it: a key the client sent may hold a lone surrogate (`\\udc00`)."""
    if isinstance(part, int):
        return part
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def describe_errors(errors: Sequence[Any]) -> list[str]:
    messages = []
    for error in errors:
        location = [str(_printable(part)) for part in error.get("loc", ()) if part not in ("body",)]
        where = ".".join(location) or "body"
        messages.append(f"{where}: {error.get('msg', 'invalid')}")
    return messages


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if request.method == "POST" and request.url.path == "/v1/events":
        name = exc.body.get("name") if isinstance(exc.body, dict) else None
        request.app.state.metrics.count_event(name, "rejected")
    errors = exc.errors()
    messages = describe_errors(errors)
    detail = [
        {"loc": [_printable(part) for part in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")}
        for e in errors
    ]
    return JSONResponse(status_code=422, content={"message": "; ".join(messages), "detail": detail})


async def touchflow_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TouchflowError)
    return JSONResponse(status_code=exc.http_status, content={"message": str(exc), "detail": str(exc)})
