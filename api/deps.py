"""Dependencies shared by the routers: settings, the store, API keys with scopes and rate limits."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from touchflow.apikeys import ApiKey, Scope, match
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.signing import Signer
from touchflow.store import Store
from touchflow.workflows.registry import Registry


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def get_signer(request: Request) -> Signer:
    """The app's one signer (links, tickets, customer tokens); 503 until TOUCHFLOW_SECRET_KEY is set."""
    signer: Signer | None = request.app.state.signer
    if signer is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "signed links and the onsite inbox need TOUCHFLOW_SECRET_KEY to be set",
        )
    return signer


SettingsDep = Annotated[Settings, Depends(get_settings)]
SignerDep = Annotated[Signer, Depends(get_signer)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StoreDep = Annotated[Store, Depends(get_store)]
RelayDep = Annotated[Relay, Depends(get_relay)]

_bearer = HTTPBearer(auto_error=False, description="An API key from TOUCHFLOW_API_KEYS")


def require(scope: Scope) -> Any:
    """A dependency that admits a request whose key holds `scope`, within the key's rate limit."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        key = None
        if credentials is not None and credentials.scheme.lower() == "bearer":
            key = match(credentials.credentials, request.app.state.api_keys)
        if key is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or invalid API key: send 'Authorization: Bearer <key>' with a key "
                "from TOUCHFLOW_API_KEYS",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key.allows(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this API key (id {key.id}) lacks the '{scope}' scope; "
                f"give it '{scope}:' in TOUCHFLOW_API_KEYS or use another key",
            )
        settings: Settings = request.app.state.settings
        if settings.rate_limit_per_minute:
            store: Store = request.app.state.store
            count, window_end = await asyncio.to_thread(store.count_request, key.id, 60, time.time())
            if count > settings.rate_limit_per_minute:
                retry_after = max(1, math.ceil(window_end - time.time()))
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"rate limit of {settings.rate_limit_per_minute} requests a minute reached for API "
                    f"key {key.id}; retry after {retry_after}s (TOUCHFLOW_RATE_LIMIT_PER_MINUTE)",
                    headers={"Retry-After": str(retry_after)},
                )
        return key

    return Depends(check)


Ingest = require(Scope.INGEST)
Read = require(Scope.READ)
InboxTokens = require(Scope.INBOX)
Admin = require(Scope.ADMIN)
