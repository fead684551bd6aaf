"""One transport to the providers (backend/lib/upstream.py): the gateway's ``/v1/embeddings``
and the ``openai`` embedding provider (search queries, the workers) call the same fake upstream
and retry, back off and time out the same way, given the same retries and timeout."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import msgspec
import pytest

from backend.config import Settings
from backend.vectors.embedders import ModelChoice, ProviderError, embedder_for
from tests.integration.conftest import bearer

MODELS = """
providers:
  fake: {{base_url: "{base_url}", api_key: sk-fake-secret}}
models:
  once: {{provider: fake, model: fake-embed, retries: 1}}
  thrice: {{provider: fake, model: fake-embed, retries: 2}}
  hasty: {{provider: fake, model: fake-embed, retries: 0, timeout_seconds: 0.3}}
"""


@dataclass(frozen=True)
class Scenario:
    marker: str  # the fake upstream's misbehaviour (tests/fake_openai.py)
    alias: str  # the gateway alias...
    retries: int  # ...and the embedder settings, alike
    timeout: float
    answered: bool  # whether the call gets its vectors in the end
    calls: int  # requests the upstream sees for it
    within: float  # seconds the call may take at most


SCENARIOS = [
    # A failure that passes: one retry gets over it.
    Scenario("[[500-once]]", "once", 1, 30.0, answered=True, calls=2, within=5.0),
    # Always 429 with retry-after-ms 20: the wait is the provider's (not the 0.5 s backoff),
    # and the retries stop at the count.
    Scenario("[[429]]", "thrice", 2, 30.0, answered=False, calls=3, within=1.0),
    # Slower than the timeout (the upstream answers after 2 s): given up after 0.3 s.
    Scenario("[[slow]]", "hasty", 0, 0.3, answered=False, calls=1, within=1.5),
]


@pytest.fixture
def settings(settings, upstream, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(MODELS.format(base_url=upstream.base_url))
    return msgspec.structs.replace(settings, models_file=str(path))


def _calls_with(upstream, text: str) -> int:
    return sum(1 for call in upstream.state.calls if text in json.dumps(call.body))


def _embedder_settings(settings: Settings, upstream, scenario: Scenario) -> Settings:
    return msgspec.structs.replace(
        settings,
        embedding_provider="openai",
        embedding_base_url=upstream.base_url,
        embedding_api_key="sk-test",
        embedding_timeout_seconds=scenario.timeout,
        embedding_retries=scenario.retries,
    )


async def _through_the_gateway(client, token: str, scenario: Scenario, text: str) -> bool:
    response = await client.post(
        "/v1/embeddings",
        json={"model": scenario.alias, "input": text},
        headers=bearer(token),
    )
    assert response.status_code in (200, 502), response.text
    return response.status_code == 200


async def _through_the_embedder(settings: Settings, scenario: Scenario, text: str) -> bool:
    embedder = embedder_for(ModelChoice("openai", "fake-embed", 64), settings)
    try:
        await asyncio.to_thread(embedder.embed, [text])
    except ProviderError as exc:
        assert exc.retryable  # each failure here may pass: the embedding task tries again
        return False
    return True


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.marker.strip("[]"))
@pytest.mark.parametrize("path", ["gateway", "embedder"])
async def test_both_paths_retry_and_time_out_alike(
    client, sign_up, settings, upstream, scenario, path
):
    tokens = await sign_up()
    text = f"{scenario.marker} {uuid.uuid4().hex}"
    started = time.monotonic()
    if path == "gateway":
        answered = await _through_the_gateway(client, tokens["access_token"], scenario, text)
    else:
        embedder_settings = _embedder_settings(settings, upstream, scenario)
        answered = await _through_the_embedder(embedder_settings, scenario, text)
    elapsed = time.monotonic() - started
    assert answered == scenario.answered
    assert _calls_with(upstream, text) == scenario.calls
    assert elapsed < scenario.within


async def test_the_embedder_sends_what_the_gateway_sends(settings, upstream):
    """The bearer key, the upstream model name, and vectors of the asked size, unit length."""
    embedder_settings = msgspec.structs.replace(
        settings,
        embedding_provider="openai",
        embedding_base_url=upstream.base_url,
        embedding_api_key="sk-test",
        embedding_dimensions=32,
    )
    embedder = embedder_for(ModelChoice("openai", "fake-embed", 32), embedder_settings)
    text = f"granite {uuid.uuid4().hex}"
    (vector,) = await asyncio.to_thread(embedder.embed, [text])
    assert len(vector) == 32
    assert sum(x * x for x in vector) == pytest.approx(1.0)
    (call,) = [c for c in upstream.state.calls if text in json.dumps(c.body)]
    assert call.path == "/v1/embeddings"
    assert call.authorization == "Bearer sk-test"
    assert call.body == {
        "input": [text],
        "encoding_format": "float",
        "dimensions": 32,
        "model": "fake-embed",
    }
