"""CORS on some paths only, for the origins a setting names: the onsite inbox for
TOUCHFLOW_INBOX_ALLOWED_ORIGINS, analytics.js's tracking calls for TOUCHFLOW_TRACK_ALLOWED_ORIGINS; no
other route answers a browser on another origin."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class CORSFor:
    """Pure ASGI middleware: Starlette's CORS for the paths `applies` admits, nothing for the rest."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        applies: Callable[[str], bool],
        origins: Sequence[str],
        headers: Sequence[str],
    ) -> None:
        self.app = app
        self.applies = applies
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=headers,
            expose_headers=["Retry-After"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.applies(str(scope["path"])):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
