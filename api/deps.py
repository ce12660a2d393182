"""Dependencies shared by the routers: settings, the store, API keys with scopes and rate limits (per key, and
of failed key checks per client address)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from touchflow.apikeys import ApiKey, Scope, match
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.signing import Signer
from touchflow.storage import Store
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


def require(scope: Scope, *, metered: bool = True) -> Any:
    """A dependency that admits a request whose key holds `scope`, within the key's rate limit.

    The request counts one toward TOUCHFLOW_RATE_LIMIT_PER_MINUTE; with `metered=False` the route counts
    its own cost with `charge` (a batch counts each of its events).
    """

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        # Another scheme than Bearer names no key: a failed guess, like a wrong key.
        presented = credentials.credentials if credentials else request.headers.get("authorization")
        key = await authenticate(request, presented, scope)
        if metered:
            await charge(request, key, 1)
        return key

    return Depends(check)


async def authenticate(request: Request, presented: str | None, scope: Scope) -> ApiKey:
    """The key `presented` (however the request carried it) if it is one of ours and holds `scope`; 401 or
    403 otherwise, and 429 for an address guessing keys."""
    key = match(presented, request.app.state.api_keys) if presented is not None else None
    # Any credential that names no key is a failed guess (a request without one is not).
    await guard_address(request, failed=key is None and presented is not None)
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
    return key


def _address_key(request: Request) -> str:
    """The rate window of a client address: hashed (the window table keeps no addresses), 16 characters."""
    address = request.client.host if request.client is not None else "unknown"
    return "auth:" + hashlib.sha256(address.encode()).hexdigest()[:11]


async def guard_address(request: Request, *, failed: bool) -> None:
    """429 for an address past TOUCHFLOW_AUTH_FAILURES_PER_MINUTE failed key checks this minute, whatever
    key it sends now (the right one too, so guessing learns nothing more); counts this check if `failed`.

    Counted in the database beside the key limits, so every API process refuses the address alike.
    """
    settings: Settings = request.app.state.settings
    limit = settings.auth_failures_per_minute
    if not limit:
        return
    store: Store = request.app.state.store
    window = _address_key(request)
    now = time.time()
    seen = await asyncio.to_thread(store.rates.peek, window, 60, now)
    if seen.count < limit:
        if not failed:
            return
        seen = await asyncio.to_thread(store.rates.count, window, 60, now)
        if seen.count <= limit:
            return  # the caller answers 401
    retry_after = max(1, math.ceil(seen.resets_at - time.time()))
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed API key checks from this address ({limit} a minute, "
        f"TOUCHFLOW_AUTH_FAILURES_PER_MINUTE); retry after {retry_after}s with a key from TOUCHFLOW_API_KEYS",
        headers={"Retry-After": str(retry_after)},
    )


async def charge(request: Request, key: ApiKey, cost: int) -> None:
    """Count `cost` toward the key's rate limit, or answer 429 with `Retry-After` and count nothing (the
    caller then does nothing of the request)."""
    settings: Settings = request.app.state.settings
    limit = settings.rate_limit_per_minute
    if not limit:
        return
    store: Store = request.app.state.store
    counted = await asyncio.to_thread(store.rates.count, key.id, 60, time.time(), cost, limit)
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
InboxTokens = require(Scope.INBOX)
Admin = require(Scope.ADMIN)
# The key of a route that counts its own cost toward the rate limit with `charge`.
IngestKeyDep = Annotated[ApiKey, require(Scope.INGEST, metered=False)]
