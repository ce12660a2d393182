"""Storage: every read and write touchflow makes to its database, one repository per aggregate.

    Store(engine)            what the composition roots build and hand down
    ├── .customers           customers.py   profiles, consents
    ├── .identities          identities.py  anonymous visitors merged into known customers
    ├── .events              events.py      ingest (stored once, queued, `touchflow.ingest_rules` applied)
    ├── .outbox              events.py      the relays' leases on whole customers, back-off, finishing
    ├── .journeys            journeys.py    journey entries: runs begun and ended, re-entry, funnel runs
    ├── .deliveries          deliveries.py  claim, send lease (fenced by token), suppressions, engagement
    ├── .inbox               inbox.py       the onsite inbox: pages, marks, the live streams' polls
    ├── .coupons             coupons.py     issue once per business key
    ├── .segments            segments.py    definitions, memberships kept up to date, entries and exits
    ├── .broadcasts          broadcasts.py  broadcasts, their audience snapshot and batches, their counts
    ├── .insight             insight.py     attributions (kept once settled), entries over time, timelines
    ├── .rollups             rollups.py     runs and deliveries counted per hour, recounted when stale
    ├── .push                push.py        web push subscriptions
    ├── .tokens              tokens.py      the Zalo OA's token pair and its sending hold
    ├── .rates               rates.py       API rate windows
    └── .erase(customer_id)  erasure.py     across all of them, in one transaction
    base.py                  the engine, tables, and the SQL that differs between SQLite and PostgreSQL

Every call is synchronous (SQLAlchemy), one transaction of its own, so async callers run it in a thread
(`asyncio.to_thread`). Works the same on SQLite and PostgreSQL; where they differ (row locks, upserts) the
repository says how.
"""

from __future__ import annotations

from sqlalchemy import Engine

from touchflow.ingest_rules import INGEST_RULES
from touchflow.storage.broadcasts import Broadcasts
from touchflow.storage.coupons import Coupons
from touchflow.storage.customers import Customers
from touchflow.storage.deliveries import Deliveries
from touchflow.storage.erasure import erase_customer
from touchflow.storage.events import ClaimedEvent, Events, Outbox
from touchflow.storage.identities import Identities
from touchflow.storage.inbox import InboxMessages, InboxSlice
from touchflow.storage.insight import Insight, TimelineRow
from touchflow.storage.journeys import JourneyEntries
from touchflow.storage.push import PushSubscriptions
from touchflow.storage.rates import RateCount, RateWindows
from touchflow.storage.rollups import FunnelCounts, FunnelRow, Rollups
from touchflow.storage.segments import Segments
from touchflow.storage.tokens import ZaloTokens

__all__ = ["ClaimedEvent", "FunnelCounts", "FunnelRow", "InboxSlice", "RateCount", "Store", "TimelineRow"]


class Store:
    """The repositories on one engine; the API, the relay and the activities share it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.segments = Segments(engine)
        self.customers = Customers(engine, self.segments)
        self.identities = Identities(engine)
        self.events = Events(engine, INGEST_RULES, self.segments)
        self.outbox = Outbox(engine)
        self.journeys = JourneyEntries(engine)
        self.deliveries = Deliveries(engine, self.segments)
        self.inbox = InboxMessages(engine)
        self.coupons = Coupons(engine)
        self.push = PushSubscriptions(engine)
        self.tokens = ZaloTokens(engine)
        self.rates = RateWindows(engine)
        self.broadcasts = Broadcasts(engine)
        self.insight = Insight(engine)
        self.rollups = Rollups(engine)

    def erase(self, customer_id: str) -> dict[str, int]:
        """Delete a customer's personal data from every aggregate (`erasure.erase_customer`)."""
        return erase_customer(self.engine, customer_id)
