"""Redis mode against a real redis-server: the same topology as docker-compose.yml, without containers.

One API process and two `python -m service worker` processes share a redis-server this module starts
on a free loopback port. Skipped only when redis-server is not installed and CI is unset; on CI a
missing redis-server fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from redis.asyncio import Redis

from service.core.config import Settings
from service.core.schema import SummaryRequest
from service.jobs.cache import RedisResultCache, cached_summarize
from service.jobs.job import IdempotencyKeyReused, Job, new_job_id
from service.jobs.store_redis import PREFIX, RedisJobStore, _job_fields
from tests.jobs.store_contract import check_idempotency_keys_live_in_their_owners_namespace
from tests.jobs.test_jobs import ARTICLE, CountingSummarizer
from tests.jobs_fakes import slow_summarizer_env
from tests.process_helpers import (
    ROOT,
    free_port,
    run_events,
    service_env,
    start_api,
    start_service,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on 127.0.0.1, no persistence, stopped after the module."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (apt-get install -y redis-server); CI must run these tests")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis_sync.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis_sync.ConnectionError:
            return False

    try:
        wait_for(answers, 10, "redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        stop(process, 10)


@pytest.fixture
async def redis(redis_url: str) -> Any:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


# --- the Redis store and cache ------------------------------------------------------------------


async def test_redis_store_idempotency_and_attempt_guard(redis: Redis) -> None:
    store = RedisJobStore(redis)
    job, created = await store.create(Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k", fingerprint="f")
    again, created_again = await store.create(
        Job(id=new_job_id(), request={"text": "a"}), idempotency_key="k", fingerprint="f"
    )
    assert (created, created_again, again.id) == (True, False, job.id)
    with pytest.raises(IdempotencyKeyReused):
        await store.create(Job(id=new_job_id(), request={"text": "b"}), idempotency_key="k", fingerprint="other")

    assert (await store.start_attempt(job.id, 1)) is not None
    assert (await store.start_attempt(job.id, 2)) is not None  # attempt 1's worker was presumed dead
    assert await store.start_attempt(job.id, 1) is None  # ... and cannot take the job back
    assert not await store.set_progress(job.id, 1, 1, 4)
    assert await store.set_progress(job.id, 2, 3, 4)
    assert not await store.set_callback_options(job.id, 1, {"message_ts": "1.0"})
    assert await store.set_callback_options(job.id, 2, {"channel": "C1", "message_ts": "2.0"})
    assert not await store.finish(job.id, 1, result={"from": 1})
    assert await store.finish(job.id, 2, result={"from": 2})
    assert not await store.finish(job.id, 2, result={"twice": True})
    stored = await store.get(job.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.result) == ("succeeded", 2, {"from": 2})
    assert stored.progress.model_dump() == {"done": 3, "total": 4}
    assert stored.callback_options == {"channel": "C1", "message_ts": "2.0"}  # what attempt 2 posted


async def test_redis_idempotency_keys_live_in_their_owners_namespace(redis: Redis) -> None:
    await check_idempotency_keys_live_in_their_owners_namespace(RedisJobStore(redis))


async def test_a_redis_job_stored_before_tenancy_reads_as_owner_less(redis: Redis) -> None:
    store = RedisJobStore(redis)
    job = Job(id=new_job_id(), request={"text": "a"})
    old_fields = {k: v for k, v in _job_fields(job).items() if k != "owner"}  # the format before `owner`
    await redis.hset(PREFIX + job.id, mapping=old_fields)
    stored = await store.get(job.id)
    assert stored is not None and stored.owner is None and stored.visible_to("key:anyone")


async def test_redis_cache_is_shared_between_clients(redis: Redis, redis_url: str) -> None:
    fake = CountingSummarizer()
    settings = Settings()
    other_replica = Redis.from_url(redis_url)
    try:
        for client in (redis, other_replica):
            _, hit = await cached_summarize(
                SummaryRequest(text=ARTICLE),
                settings=settings,
                summarize=fake,
                cache=RedisResultCache(client, ttl_s=60),
            )
        assert hit and len(fake.calls) == 1
    finally:
        await other_replica.aclose()


# --- the topology: one API, two workers --------------------------------------------------------


@pytest.mark.slow
def test_two_workers_share_jobs_and_a_killed_workers_job_completes_once(redis_url: str, tmp_path: Path) -> None:
    asyncio.run(_flush(redis_url))
    runs = tmp_path / "runs.log"
    env = service_env(
        {
            "REDIS_URL": redis_url,
            "CITESUM_JOB_CONCURRENCY": "1",
            # arq re-runs a dead worker's job when its in-progress key expires: timeout + 2 + 10 s.
            "CITESUM_JOB_TIMEOUT_S": "4",
            **slow_summarizer_env(runs, steps=4, step_s=0.5),
        }
    )
    port = free_port()
    api = start_api(port, env, tmp_path / "api.log")
    workers = [start_service(["worker"], env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            wait_for(lambda: _answers(client), 30, "the API to start", watch=[api, *workers])
            words = [f"job{i}" for i in range(6)]
            ids = {}
            for word in words:
                answer = client.post("/v1/jobs", json={"text": f"{word}: {ARTICLE}"})
                assert answer.status_code == 202, answer.text
                ids[word] = answer.json()["id"]

            # Both workers take jobs; kill the first one caught in the middle of a job.
            def one_mid_job() -> tuple[subprocess.Popen[bytes], str] | None:
                events = run_events(runs)
                if {pid for _, pid, _ in events} != {w.pid for w in workers}:
                    return None
                finished = {(pid, word) for event, pid, word in events if event == "finish"}
                for event, pid, word in events:
                    if event == "start" and (pid, word) not in finished:
                        return next(w for w in workers if w.pid == pid), word
                return None

            victim, _ = wait_for(one_mid_job, 30, "both workers to be running jobs")
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            # The compose healthcheck, run while the survivor works on (it starts slowly, so start it now).
            check = subprocess.Popen(
                [sys.executable, "-m", "service", "worker", "--check"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            events = run_events(runs)
            finished_by_victim = {w for e, p, w in events if e == "finish" and p == victim.pid}
            killed = {w for e, p, w in events if e == "start" and p == victim.pid} - finished_by_victim
            assert killed, "the victim should have died mid-job"

            def all_finished() -> dict[str, dict[str, Any]] | None:
                jobs = {word: client.get(f"/v1/jobs/{job_id}").json() for word, job_id in ids.items()}
                return jobs if all(j["status"] in ("succeeded", "failed") for j in jobs.values()) else None

            jobs = wait_for(all_finished, 60, "every job to finish", interval_s=0.25)

            survivor = next(w for w in workers if w is not victim)
            output, _ = check.communicate(timeout=60)
            assert check.returncode == 0, output
            assert survivor.poll() is None
    finally:
        for process in (*workers, api):
            stop(process)

    events = run_events(runs)
    for word, job in jobs.items():
        assert job["status"] == "succeeded", (word, job)
        assert job["result"]["document"]["text"].startswith(f"{word}:")
        assert job["attempts"] == (2 if word in killed else 1), (word, job["attempts"])
        finishes = [pid for event, pid, w in events if event == "finish" and w == word]
        assert len(finishes) == 1, (word, finishes)  # completed once: nothing lost, nothing twice
    assert {pid for _, pid, _ in events} == {w.pid for w in workers}


@pytest.mark.slow
def test_idempotency_and_cache_across_processes(redis_url: str, tmp_path: Path) -> None:
    asyncio.run(_flush(redis_url))
    runs = tmp_path / "runs.log"
    env = service_env(
        {
            "REDIS_URL": redis_url,
            **slow_summarizer_env(runs, steps=2, step_s=0.1),
        }
    )
    port = free_port()
    api = start_api(port, env, tmp_path / "api.log")
    worker = start_service(["worker"], env, tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_for(lambda: _answers(client), 30, "the API to start", watch=[api, worker])
            body = {"text": f"cached: {ARTICLE}"}
            # The main endpoint in async mode, both ways of asking for it.
            first = client.post(
                "/v1/summaries", json=body, headers={"Idempotency-Key": "k-1", "Prefer": "respond-async"}
            )
            retried = client.post("/v1/summaries", json={**body, "async": True}, headers={"Idempotency-Key": "k-1"})
            assert first.status_code == retried.status_code == 202, first.text
            assert first.headers["preference-applied"] == "respond-async"
            assert retried.json()["id"] == first.json()["id"]
            done = wait_for(
                lambda: (j := client.get(first.headers["location"]).json())["status"] == "succeeded" and j,
                30,
                "the first job",
            )
            again = client.post("/v1/jobs", json=body)
    finally:
        stop(worker)
        stop(api)
    assert again.status_code == 202 and again.json()["id"] != first.json()["id"]
    assert again.json()["status"] == "succeeded" and again.json()["result"]["usage"]["llm_calls"] == 0
    assert again.json()["result"]["summary"] == done["result"]["summary"]
    assert [e for e, _, _ in run_events(runs)] == ["start", "finish"]  # one summarize run in all


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


async def _flush(url: str) -> None:
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
