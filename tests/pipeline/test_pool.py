"""LinearPool: httpcore's assignment pass with the same decisions, in calls linear in the pool's size."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpcore
import httpx
import openai

from service.core.config import Settings
from service.pipeline.llm import build_openai_client
from service.pipeline.pool import LinearPool, use_linear_pool

ORIGINS = [httpcore.URL("http://model.test/v1").origin, httpcore.URL("http://other.test/v1").origin]


@dataclass(eq=False)
class FakeConnection:
    """A connection in a fixed state; counts the state questions it was asked."""

    origin: httpcore.Origin
    closed: bool = False
    expired: bool = False
    idle: bool = False
    available: bool = False
    questions: list[int] = field(default_factory=lambda: [0])

    def is_closed(self) -> bool:
        self.questions[0] += 1
        return self.closed

    def has_expired(self) -> bool:
        self.questions[0] += 1
        return self.expired

    def is_idle(self) -> bool:
        self.questions[0] += 1
        return self.idle

    def is_available(self) -> bool:
        self.questions[0] += 1
        return self.available

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        self.questions[0] += 1
        return origin == self.origin


class FakeRequest:
    """A pool request: queued until it is given a connection."""

    def __init__(self, origin: httpcore.Origin, queued: bool) -> None:
        self.request = httpcore.Request("POST", httpcore.URL(scheme=origin.scheme, host=origin.host, port=origin.port, target="/"))
        self.queued = queued
        self.connection: object | None = None

    def is_queued(self) -> bool:
        return self.queued and self.connection is None

    def assign_to_connection(self, connection: object) -> None:
        self.connection = connection


def run_pass(pool_class: type[httpcore.AsyncConnectionPool], seed: int, connections: int) -> tuple[list, list, list, int]:
    """One assignment pass over a random pool state: (pool after, closing, assignments, state questions)."""
    rng = random.Random(seed)
    questions = [0]
    conns = []
    for i in range(connections):
        idle = rng.random() < 0.5
        conns.append(
            FakeConnection(
                ORIGINS[rng.random() < 0.2],
                closed=rng.random() < 0.1,
                expired=rng.random() < 0.1,
                idle=idle,
                available=idle and rng.random() < 0.8,
                questions=questions,
            )
        )
        conns[-1].name = i  # type: ignore[attr-defined]
    requests = [FakeRequest(ORIGINS[rng.random() < 0.3], queued=rng.random() < 0.7) for _ in range(rng.randint(0, 6))]
    pool = pool_class(max_connections=rng.choice([connections // 2 + 1, connections + 2]), max_keepalive_connections=rng.randint(0, connections))
    pool._connections = list(conns)
    pool._requests = requests
    pool.create_connection = lambda origin: FakeConnection(origin, questions=questions)  # type: ignore[method-assign]

    def name(connection: object) -> object:
        return getattr(connection, "name", ("new", getattr(connection, "origin", None)))

    closing = pool._assign_requests_to_connections()
    return (
        [name(c) for c in pool._connections],
        [name(c) for c in closing],
        [name(r.connection) if r.connection is not None else None for r in requests],
        questions[0],
    )


def test_the_same_decisions_as_httpcores_pass() -> None:
    for seed in range(400):
        ours, theirs = run_pass(LinearPool, seed, 12), run_pass(httpcore.AsyncConnectionPool, seed, 12)
        assert ours[:3] == theirs[:3], seed


def test_its_cost_grows_linearly_with_the_connections() -> None:
    # All idle, none queued: httpcore asks ~connections x idle questions, LinearPool a few per connection.
    def questions(pool_class: type[httpcore.AsyncConnectionPool], n: int) -> int:
        pool = pool_class(max_connections=1000, max_keepalive_connections=100)
        counter = [0]
        pool._connections = [FakeConnection(ORIGINS[0], idle=True, available=True, questions=counter) for _ in range(n)]
        pool._requests = []
        pool._assign_requests_to_connections()
        return counter[0]

    assert questions(LinearPool, 64) <= 2 * questions(LinearPool, 32) + 4
    assert questions(httpcore.AsyncConnectionPool, 64) >= 3.5 * questions(httpcore.AsyncConnectionPool, 32)
    assert questions(LinearPool, 64) * 10 < questions(httpcore.AsyncConnectionPool, 64)


async def test_the_model_client_uses_it_and_other_clients_are_left_alone() -> None:
    client = build_openai_client(Settings(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="http://llm.test/v1"))
    assert type(client._client._transport._pool) is LinearPool
    await client.close()
    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    assert use_linear_pool(mocked) is False
    await mocked.aclose()
    given = openai.DefaultAsyncHttpxClient()
    assert build_openai_client(Settings(OPENAI_API_KEY="sk-test"), http_client=given)._client is given
    assert type(given._transport._pool) is httpcore.AsyncConnectionPool  # a client the caller built is theirs
    await given.aclose()
