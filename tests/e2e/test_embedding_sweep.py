"""A provider outage heals by itself: records whose embedding failed for good are sent again by
beat's vectors.retry_failed, backing off while the provider is still down, and are embedded
once it is back, without anyone editing them."""

from __future__ import annotations

import sys
import uuid

from tests.e2e.conftest import _spawn, _stop, signed_up, sql
from tests.e2e.test_vectors import NOTES, _search
from tests.waiting import eventually

STATUS = "/collections/notes/embedding-status"


async def test_failed_embeddings_are_retried_by_the_sweep_until_the_provider_is_back(
    stack, upstream, tmp_path
):
    alice = await signed_up(stack, admin=True)  # an admin: embedding-status is for admins
    marker = f"outage{uuid.uuid4().hex[:8]}"
    upstream.state.outages.add(marker)
    beat = None
    try:
        notes = []
        for i in range(3):
            created = await alice.post(NOTES, json={"title": f"t{i}", "body": f"{marker} n{i}"})
            assert created.status_code == 201, created.text
            notes.append(created.json())
        ids = [note["id"] for note in notes]

        def states() -> list[tuple[str, int]]:
            return sql(
                stack,
                "SELECT status, retries FROM embedding_records WHERE record_id = ANY(%s::uuid[])",
                ids,
            )

        async def all_failed():
            found = states()
            return len(found) == 3 and all(status == "failed" for status, _ in found)

        await eventually(all_failed)  # the task's own retries (EMBEDDING_MAX_RETRIES) are spent
        during = (await alice.get(STATUS)).json()
        assert during["failed"] >= 3

        beat = _spawn(
            [sys.executable, "-m", "backend.cli", "beat", "--schedule", str(tmp_path / "beat")],
            {**stack.env, "EMBEDDING_SWEEP_INTERVAL_SECONDS": "1"},
            stack.log_dir / "beat-sweep.log",
        )

        def failures() -> int:
            return sql(
                stack,
                "SELECT count(*) FROM embedding_failures WHERE record_id = ANY(%s::uuid[])",
                ids,
            )[0][0]

        async def retried_while_down():
            found = states()
            again = all(status == "failed" and retries >= 1 for status, retries in found)
            return again and failures() >= 6  # each failed for good twice: sent again, refused

        # Still down: the sweep sends them again and they fail again, counted.
        await eventually(retried_while_down, within=30)
        assert await _search(alice, query=marker, mode="text") == []

        upstream.state.outages.discard(marker)  # the provider is back

        async def all_done():
            found = states()
            return all(status == "done" for status, _ in found) and found

        await eventually(all_done, within=30)
        items = await _search(alice, query=marker, mode="text", k=10)
        assert {item["record"]["id"] for item in items} == set(ids)
        for note in notes:  # nobody edited them
            current = (await alice.get(f"{NOTES}/{note['id']}")).json()
            assert current["updated_at"] == note["updated_at"]
        assert states() == [("done", 0)] * 3
        after = (await alice.get(STATUS)).json()
        assert during["failed"] - after["failed"] == 3, (during, after)
        assert after["done"] - during["done"] >= 3
    finally:
        upstream.state.outages.discard(marker)
        if beat is not None:
            _stop(beat)
        await alice.aclose()
