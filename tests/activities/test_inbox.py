"""The store-backed inbox the onsite channel writes to (activities/inbox.py)."""

from __future__ import annotations

import pytest

from touchflow.activities.inbox import StoreInbox
from touchflow.channels import RetryableDeliveryError
from touchflow.db import make_engine
from touchflow.storage import Store
from touchflow.temporal import free_port


async def test_an_unreachable_database_is_a_retryable_error() -> None:
    engine = make_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(RetryableDeliveryError, match="inbox storage unavailable"):
            await StoreInbox(Store(engine)).save("c1", "k1", "t", "b", None)
    finally:
        engine.dispose()
