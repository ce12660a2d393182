"""The registry touchflow's own journey tests run: every built-in journey plus the channel tests' probe.

The harness itself is the public one, `touchflow.testing` (its pytest plugin gives the `journeys` fixture).
"""

from __future__ import annotations

from tests.support.probe import Probe
from touchflow.testing import registry_of

TEST_REGISTRY = registry_of(Probe, builtins=True)
