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


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StoreDep = Annotated[Store, Depends(get_store)]
RelayDep = Annotated[Relay, Depends(get_relay)]

_bearer = HTTPBearer(auto_error=False, description="An API key from TOUCHFLOW_API_KEYS")


def require(scope: Scope, *, metered: bool = True) -> Any:
    """A dependency that admits a request whose key holds `scope`, within the key's rate limit.

    The request counts one toward TOUCHFLOW_RATE_LIMIT_PER_MINUTE; with `metered=False` the route counts
    its own cost with `charge` (a batch counts each of its events).
    """

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
        if metered:
            await charge(request, key, 1)
        return key

    return Depends(check)


async def charge(request: Request, key: ApiKey, cost: int) -> None:
    """Count `cost` toward the key's rate limit, or answer 429 with `Retry-After` and count nothing (the
    caller then does nothing of the request)."""
    settings: Settings = request.app.state.settings
    limit = settings.rate_limit_per_minute
    if not limit:
        return
    store: Store = request.app.state.store
    counted = await asyncio.to_thread(store.count_request, key.id, 60, time.time(), cost, limit)
    if counted.admitted:
        return
    retry_after = max(1, math.ceil(counted.resets_at - time.time()))
    what = f"this request counts {cost}, " if cost > 1 else ""
    if cost > limit:
        what += f"more than a whole minute's {limit}: send at most {limit} events a batch; "
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"rate limit of {limit} a minute reached for API key {key.id} (each event of a batch counts one, "
        f"any other request one; {what}{counted.count} counted so far); retry after {retry_after}s "
        "(TOUCHFLOW_RATE_LIMIT_PER_MINUTE)",
        headers={"Retry-After": str(retry_after)},
    )


Ingest = require(Scope.INGEST)
Read = require(Scope.READ)
Admin = require(Scope.ADMIN)
# The key of a route that counts its own cost toward the rate limit with `charge`.
IngestKeyDep = Annotated[ApiKey, require(Scope.INGEST, metered=False)]
