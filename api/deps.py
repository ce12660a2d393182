"""Dependencies shared by the routers: settings, the store, API-key authentication."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.store import Store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
RelayDep = Annotated[Relay, Depends(get_relay)]

_bearer = HTTPBearer(auto_error=False, description="An API key from TOUCHFLOW_API_KEYS")


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept any configured key; the presented key is compared, hashed, against all of them in full."""
    unauthorized = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key: send 'Authorization: Bearer <key>' with a key "
        "from TOUCHFLOW_API_KEYS",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    presented = hash_key(credentials.credentials)
    matched = False
    for known in request.app.state.api_key_hashes:
        matched |= hmac.compare_digest(presented, known)
    if not matched:
        raise unauthorized


ApiKey = Depends(require_api_key)
