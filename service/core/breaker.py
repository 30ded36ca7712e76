"""A circuit breaker for the model server: fail fast after repeated upstream failures, then probe.

closed     calls pass; `failure_threshold` consecutive upstream failures (LLMUnavailable, LLMTimeout)
           open it.
open       calls fail at once with CircuitOpen (503, Retry-After = the rest of the cooldown).
half-open  after `cooldown_s`, one probe call passes while the others still fail fast; its success
           closes the breaker, its failure opens it again for another cooldown.

Why not a library: aiobreaker's last release is from 2021; pybreaker's async support is Tornado's,
not asyncio's; purgatory is asyncio-native but brings a global registry and unit-of-work machinery
for what is forty lines here, and none of them gives the remaining cooldown for Retry-After.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

from service.core import metrics
from service.core.errors import CircuitOpen, LLMTimeout, LLMUnavailable

log = logging.getLogger(__name__)

State = Literal["closed", "half_open", "open"]
_GAUGE = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """Counts consecutive upstream failures of the calls it guards; see the module docstring."""

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state: State = "closed"
        self.failures = 0  # consecutive upstream failures
        self.opened_at = 0.0
        self.probing = False  # a half-open probe is in flight

    def _set_state(self, state: State) -> None:
        if state != self.state:
            log.warning("llm circuit breaker: %s -> %s", self.state, state)
            self.state = state
            metrics.BREAKER_STATE.set(_GAUGE[state])
            metrics.BREAKER_TRANSITIONS.labels(state).inc()

    def _admit(self) -> bool:
        """Let a call through or raise CircuitOpen; True when the call is the half-open probe."""
        if self.state == "open":
            remaining = self.cooldown_s - (self.clock() - self.opened_at)
            if remaining > 0:
                raise CircuitOpen(
                    f"the model server failed {self.failures} times in a row; not calling it for"
                    f" {remaining:.0f} s more (CITESUM_BREAKER_COOLDOWN_S)",
                    retry_after=remaining,
                )
            self._set_state("half_open")
        if self.state == "half_open":
            if self.probing:
                raise CircuitOpen(
                    "the model server is being probed after repeated failures; try again shortly",
                    retry_after=1.0,
                )
            self.probing = True
            return True
        return False

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run one upstream call under the breaker."""
        probe = self._admit()
        try:
            yield
        except (LLMUnavailable, LLMTimeout):
            self.failures += 1
            if probe or self.failures >= self.failure_threshold:
                self.opened_at = self.clock()
                self._set_state("open")
            raise
        except BaseException:
            # Cancelled (request deadline) or a bad answer: the server was not shown to be down.
            raise
        else:
            self.failures = 0
            self._set_state("closed")
        finally:
            if probe:
                self.probing = False
