"""Checks every job store (SQLite, Redis) must pass, written once and run by each store's tests."""

from __future__ import annotations

from service.jobs.job import CHAT_OWNER, Job, JobStore, new_job_id


async def check_idempotency_keys_live_in_their_owners_namespace(store: JobStore) -> None:
    """One idempotency key, four owners: four jobs; the same owner again finds its own job; owners stay apart."""
    jobs = {}
    for owner in ("key:a", "key:b", CHAT_OWNER, None):
        jobs[owner], created = await store.create(
            Job(id=new_job_id(), request={"text": str(owner)}, owner=owner), idempotency_key="k", fingerprint=str(owner)
        )
        assert created, f"{owner} found another owner's job under the same key"
    again, created = await store.create(
        Job(id=new_job_id(), request={"text": "key:a"}, owner="key:a"), idempotency_key="k", fingerprint="key:a"
    )
    assert not created and again.id == jobs["key:a"].id and again.owner == "key:a"
    stored = await store.get(jobs["key:b"].id)
    assert stored is not None and stored.owner == "key:b"
    assert not stored.visible_to("key:a") and stored.visible_to("key:b")
