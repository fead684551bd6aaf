"""AI: the model gateway (/v1 and its budgets and usage), prompt templates and ask."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from litestar import Litestar

from backend.ai.catalog import load_catalog
from backend.ai.gateway import Gateway
from backend.ai.prompt_routes import prompt_routers
from backend.ai.prompts import load_library
from backend.ai.routes import gateway_routers
from backend.ai.service import keep_overrides_copied
from backend.ai.summaries import check_summary
from backend.ai.usage import UsageWriter
from backend.capability import Basics, Capability
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.jobs.types import SummarizeRecord
from backend.lib.background import running


def ai_capability(
    basics: Basics, registry: CollectionRegistry, rules: dict[str, CompiledRules]
) -> Capability:
    settings, redis = basics.settings, basics.redis
    # models.yaml is checked whole here: a mistake stops the API before it serves.
    gateway = Gateway(load_catalog(settings), settings, redis, basics.clock)
    # Prompt files too: a broken one stops the API, naming the file and the reason.
    prompts = load_library(Path(settings.prompts_dir))

    @asynccontextmanager
    async def run_gateway(app: Litestar) -> AsyncIterator[None]:
        # The SQLAlchemy plugin's own engine, and Redis, which the app closes only after
        # every capability's lifespan ends: the last usage events are written on the way out.
        engine = basics.database.get_engine()
        writer = UsageWriter(redis, engine, settings)
        copy = partial(keep_overrides_copied, engine, gateway.budgets, settings)
        try:
            async with running(writer.run, "ai-usage", grace=5), running(copy, "ai-budgets"):
                try:
                    yield
                finally:
                    await gateway.settled()  # their usage events, before the last drain
        finally:
            await gateway.close()
            await engine.dispose()  # the plugin disposed of it first; the last drain reopened it

    def summary_check(parsed: Any) -> None:
        check_summary(parsed, registry, prompts)

    return Capability(
        "ai",
        routes=[
            *prompt_routers(registry, rules, settings, prompts),
            *gateway_routers(settings),
        ],
        lifespans=[run_gateway],
        state={"gateway": gateway, "prompts": prompts},
        job_input_checks={SummarizeRecord: summary_check},
    )
