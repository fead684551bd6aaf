"""`.env` is read by every command (get_settings), under the environment."""

from __future__ import annotations

import os

from backend.config import environ_with_dotenv, settings_from_env


def test_the_env_file_fills_in_what_the_environment_does_not_set(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\nPAGE_MAX_LIMIT=123\nAI_BUDGET_PERIOD=week\nLITEBASE_ENV=test\n"
    )
    environ = {"LITEBASE_ENV_FILE": str(env_file), "PAGE_MAX_LIMIT": "77"}
    settings = settings_from_env(environ_with_dotenv(environ))
    assert settings.page_max_limit == 77  # the environment wins
    assert settings.ai_budget_period == "week"  # the file fills in
    assert settings.env == "test"


def test_no_env_file_is_fine(tmp_path):
    environ = {"LITEBASE_ENV_FILE": str(tmp_path / "absent")}
    assert environ_with_dotenv(environ) == environ


def test_the_test_run_reads_no_developer_env_file():
    assert os.environ["LITEBASE_ENV_FILE"] == os.devnull
