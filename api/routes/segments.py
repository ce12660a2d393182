"""Segments: define them over the API (no deploy needed), read their size and members; declared ones (journey
modules, lifecycle stages) are listed and read here too, but change only in code (409)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from touchflow.api.deps import Admin, Read, StoreDep
from touchflow.errors import NotFound
from touchflow.models import (
    SegmentIn,
    SegmentMemberPublic,
    SegmentMembersPage,
    SegmentMovementPublic,
    SegmentPublic,
    SegmentUpdate,
)
from touchflow.segments import SegmentDefinition, segment_name

router = APIRouter(prefix="/v1/segments", tags=["segments"])


def _public(definition: SegmentDefinition, size: int | None = None) -> SegmentPublic:
    return SegmentPublic(
        name=definition.name,
        description=definition.description,
        condition=definition.condition.to_json(),
        source=definition.source,
        size=size,
    )


@router.post("", response_model=SegmentPublic, status_code=status.HTTP_201_CREATED, dependencies=[Admin])
async def create_segment(body: SegmentIn, store: StoreDep) -> SegmentPublic:
    """Define a segment; its members are found at once. 409 if the name is taken, 422 naming the bad node
    of `condition` (docs/segments.md has the language)."""
    name = segment_name(body.name, "name")
    definition, _ = await asyncio.to_thread(store.segments.create, name, body.description, body.condition)
    return _public(definition, await asyncio.to_thread(store.segments.size, name))


@router.get("", response_model=list[SegmentPublic], dependencies=[Read])
async def list_segments(store: StoreDep) -> list[SegmentPublic]:
    """Every segment: lifecycle stages, those of the journey modules, those made over the API."""
    definitions = await asyncio.to_thread(store.segments.definitions)
    return [_public(definition) for definition in definitions.values()]


@router.get("/{name}", response_model=SegmentPublic, dependencies=[Read])
async def get_segment(name: str, store: StoreDep) -> SegmentPublic:
    """A segment with its `size` (kept memberships are counted, nothing is re-evaluated)."""
    definition = await asyncio.to_thread(store.segments.get, name)
    if definition is None:
        raise NotFound(f"no segment named {name!r}")
    return _public(definition, await asyncio.to_thread(store.segments.size, name))


@router.get("/{name}/members", response_model=SegmentMembersPage, dependencies=[Read])
async def segment_members(
    name: str,
    store: StoreDep,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SegmentMembersPage:
    """Members in customer id order, a page at a time."""
    if await asyncio.to_thread(store.segments.get, name) is None:
        raise NotFound(f"no segment named {name!r}")
    members = await asyncio.to_thread(store.segments.members, name, cursor, limit)
    return SegmentMembersPage(
        members=[SegmentMemberPublic(customer_id=m.customer_id, entered_at=m.entered_at) for m in members],
        next_cursor=members[-1].customer_id if len(members) == limit else None,
    )


@router.get("/{name}/movements", response_model=list[SegmentMovementPublic], dependencies=[Read])
async def segment_movements(
    name: str, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[SegmentMovementPublic]:
    """The latest entries and exits, newest first: how the segment moves over time."""
    if await asyncio.to_thread(store.segments.get, name) is None:
        raise NotFound(f"no segment named {name!r}")
    moves = await asyncio.to_thread(store.segments.movements, name, limit)
    return [SegmentMovementPublic(customer_id=m.customer_id, entered=m.entered, at=m.at) for m in moves]


@router.put("/{name}", response_model=SegmentPublic, dependencies=[Admin])
async def replace_segment(name: str, body: SegmentUpdate, store: StoreDep) -> SegmentPublic:
    """Change a segment made over the API; members are re-evaluated at once, entries and exits recorded."""
    definition, _ = await asyncio.to_thread(store.segments.replace, name, body.description, body.condition)
    return _public(definition, await asyncio.to_thread(store.segments.size, name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Admin])
async def delete_segment(name: str, store: StoreDep) -> Response:
    """Remove a segment made over the API (409 while another segment names it)."""
    await asyncio.to_thread(store.segments.delete, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
