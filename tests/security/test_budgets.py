"""Issue 18.9: a chat call that named no max_tokens reserved AI_COMPLETION_RESERVE_TOKENS but
was free to produce as many as the model liked, overshooting every budget; prod shipped with
no budget at all for users."""

from __future__ import annotations

import msgspec
import pytest

from backend.ai.budgets import default_limits
from backend.config import settings_from_env
from tests.integration.conftest import bearer
from tests.integration.test_gateway import GATEWAY_MODELS, chat_body, marker
from tests.support import PROD_ENV

RESERVE = 32


@pytest.fixture
def settings(settings, upstream, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(GATEWAY_MODELS.format(base_url=upstream.base_url))
    return msgspec.structs.replace(
        settings, models_file=str(path), ai_completion_reserve_tokens=RESERVE
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_without_max_tokens_is_capped_at_what_it_reserved(
    client, sign_up, upstream, stream
):
    headers = bearer((await sign_up())["access_token"])
    tag = marker()
    answered = await client.post(
        "/v1/chat/completions", json=chat_body(tag, n=2, stream=stream), headers=headers
    )
    assert answered.status_code == 200, answered.text
    [call] = upstream.state.calls_with(tag) or upstream.state.streams_with(tag)
    assert call.body["max_tokens"] == RESERVE  # per choice, as reserved
    assert "max_completion_tokens" not in call.body


async def test_a_callers_own_limit_is_passed_on_untouched(client, sign_up, upstream):
    headers = bearer((await sign_up())["access_token"])
    tag = marker()
    body = chat_body(tag, max_completion_tokens=5)
    answered = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert answered.status_code == 200, answered.text
    [call] = upstream.state.calls_with(tag)
    assert call.body["max_completion_tokens"] == 5 and "max_tokens" not in call.body


def test_prod_ships_a_budget_and_a_rate_for_every_user():
    prod = settings_from_env(PROD_ENV)
    limits = default_limits(prod, "user")
    assert limits.tokens_per_period > 0 and limits.requests_per_minute > 0
    # Still a setting: 0 says none, in prod too; dev and test default to none.
    unlimited = msgspec.structs.replace(prod, ai_user_tokens_per_period=0)
    assert default_limits(unlimited, "user").tokens_per_period == 0
    assert default_limits(settings_from_env({}), "user").tokens_per_period == 0
