"""The job doors per tenant: a job and its Idempotency-Key belong to the API key that submitted them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.interfaces.api import create_app
from service.interfaces.jobs_api import MAX_IDEMPOTENCY_KEY_CHARS
from service.jobs.job import CHAT_OWNER, Job, new_job_id
from tests.jobs.test_jobs import ARTICLE, CountingSummarizer

KEY_A, KEY_B = "key-alpha-0123456789", "key-bravo-9876543210"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_client(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(job_db_path=str(tmp_path / "jobs.sqlite3"), job_retry_backoff_s=0.0, **settings))
    app.state.job_summarizer = CountingSummarizer()
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path, api_keys=f"{KEY_A},{KEY_B}")


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path)


def finished(client: TestClient, url: str, key: str, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(url, headers=bearer(key)).json()
        if body.get("status") in ("succeeded", "failed"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"{url} did not finish")


def submit(client: TestClient, key: str, text: str = ARTICLE, idempotency_key: str | None = None, **extra: Any):
    headers = bearer(key) if key else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return client.post("/v1/jobs", json={"text": text, **extra}, headers=headers)


def test_another_key_gets_404_for_a_job_exactly_as_for_a_missing_one(client: TestClient) -> None:
    created = submit(client, KEY_A, callback_format="json")
    assert created.status_code == 202
    url = created.headers["location"]
    assert finished(client, url, KEY_A)["status"] == "succeeded"

    theirs = client.get(url, headers=bearer(KEY_B))
    missing = client.get("/v1/jobs/" + new_job_id(), headers=bearer(KEY_B))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["type"] == missing.json()["type"]
    assert ARTICLE not in theirs.text and "result" not in theirs.json()
    assert "owner" not in client.get(url, headers=bearer(KEY_A)).json()  # the job document never shows it


def test_idempotency_keys_are_per_api_key(client: TestClient) -> None:
    a_first = submit(client, KEY_A, idempotency_key="order-42")
    # B sends A's key with the same body, then with another body: a new job of B's each time, never
    # A's job (which would leak it) and never a 409 (which would say A used that key).
    b_same = submit(client, KEY_B, idempotency_key="order-42")
    b_other = submit(client, KEY_B, text=ARTICLE + " More.", idempotency_key="order-43")
    b_other_reuse = submit(client, KEY_B, text=ARTICLE + " Other.", idempotency_key="order-42")
    a_again = submit(client, KEY_A, idempotency_key="order-42")

    assert a_first.status_code == b_same.status_code == b_other.status_code == a_again.status_code == 202
    assert b_same.json()["id"] != a_first.json()["id"] and "idempotent-replayed" not in b_same.headers
    assert b_other_reuse.status_code == 409  # B's own key, reused by B for another body
    assert a_again.json()["id"] == a_first.json()["id"] and a_again.headers["idempotent-replayed"] == "true"
    assert client.get(b_same.headers["location"], headers=bearer(KEY_A)).status_code == 404


def test_chat_jobs_are_not_readable_through_the_api(client: TestClient, open_client: TestClient) -> None:
    for api in (client, open_client):
        store = api.app.state.jobs.store  # type: ignore[attr-defined]
        chat_job = Job(id=new_job_id(), status="succeeded", request={"text": ARTICLE}, owner=CHAT_OWNER,
                       callback_url="https://hooks.slack.com/commands/T1/secret", callback_format="slack_response_url")
        api.portal.call(store.create, chat_job)  # type: ignore[union-attr]
        for key in (KEY_A, KEY_B) if api is client else ("",):
            assert api.get(f"/v1/jobs/{chat_job.id}", headers=bearer(key) if key else {}).status_code == 404


def test_an_owner_less_job_stored_before_tenancy_stays_readable(client: TestClient) -> None:
    store = client.app.state.jobs.store  # type: ignore[attr-defined]
    legacy = Job(id=new_job_id(), status="succeeded", request={"text": ARTICLE})  # no owner: as stored by older versions
    client.portal.call(store.create, legacy)  # type: ignore[union-attr]
    for key in (KEY_A, KEY_B):
        assert client.get(f"/v1/jobs/{legacy.id}", headers=bearer(key)).json()["id"] == legacy.id


def test_open_mode_callers_share_one_namespace(open_client: TestClient) -> None:
    first = submit(open_client, "", idempotency_key="k")
    again = submit(open_client, "", idempotency_key="k")
    assert again.json()["id"] == first.json()["id"]
    assert finished(open_client, first.headers["location"], "")["status"] == "succeeded"


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "empty"), ("   ", "empty"), ("k" * (MAX_IDEMPOTENCY_KEY_CHARS + 1), "at most"), ("k" * 100_000, "at most")],
    ids=["empty", "blank", "one-over", "100k"],
)
def test_a_bad_idempotency_key_is_a_400_problem(client: TestClient, value: str, reason: str) -> None:
    answer = submit(client, KEY_A, idempotency_key=value)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert reason in answer.json()["detail"] and answer.json()["request_id"]
    assert client.portal.call(job_count, client) == 0  # type: ignore[union-attr]


def test_an_idempotency_key_at_the_limit_is_accepted(client: TestClient) -> None:
    assert submit(client, KEY_A, idempotency_key="k" * MAX_IDEMPOTENCY_KEY_CHARS).status_code == 202


async def job_count(client: TestClient) -> int:
    store = client.app.state.jobs.store  # type: ignore[attr-defined]
    return await store.db.run(lambda conn: conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
