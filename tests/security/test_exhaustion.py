"""Issue 18.10: open paths that took unbounded work."""

from __future__ import annotations

import pytest

from backend.config import settings_from_env


@pytest.fixture
def settings(database_url, redis_url):
    return settings_from_env(
        {},
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        relay_enabled=False,
        search_max_query_chars=50,
    )


@pytest.mark.parametrize("mode", ["text", "vector", "hybrid"])
async def test_an_anonymous_oversized_search_query_is_a_422_naming_query(client, mode):
    """An anonymous 600 kB text query answered 500; now any query over SEARCH_MAX_QUERY_CHARS
    is refused before any work."""
    for query, status in (("x" * 50, 200), ("x" * 51, 422)):
        response = await client.post(
            "/collections/notes/search", json={"query": query, "mode": mode}
        )
        assert response.status_code == status, response.text
    assert response.json()["errors"][0]["field"] == "query"
    assert "SEARCH_MAX_QUERY_CHARS" in response.json()["detail"]
