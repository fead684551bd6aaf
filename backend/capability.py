"""What a capability adds to the API, and the shared clients it is built from.

Each capability package (auth, orgs, collections, jobs, webhooks, vectors, realtime, ai, the
events relay, system) has a ``capability.py`` whose function takes ``Basics`` (and what it
reads from the capabilities below it) and returns a ``Capability``: its routers, plugins,
dependencies, lifespans, ``app.state`` entries, relay consumers and job input checks.
backend/app.py lists them and assembles one Litestar app; nothing else knows how they fit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from celery import Celery
from litestar import Litestar
from litestar.di import Provide
from litestar.plugins import PluginProtocol
from litestar.stores.base import Store
from litestar.types import ControllerRouterHandler, Middleware
from redis.asyncio import Redis

from backend.config import Settings
from backend.lib.clock import Clock

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]
# A relay consumer, made once the app's state is complete (the relay starts last).
ConsumerFactory = Callable[[Litestar], Callable[[Sequence[Any]], Awaitable[None]]]


@dataclass(frozen=True)
class Basics:
    """The clients every capability may use: one of each per app, made before any of them."""

    settings: Settings
    redis: Redis
    clock: Clock
    celery: Celery
    database: SQLAlchemyAsyncConfig


@dataclass(frozen=True)
class Capability:
    """One capability's part of the app. Lifespans are entered in the order the app lists
    the capabilities (and left in reverse), so one may use the state an earlier one set."""

    name: str
    routes: Sequence[ControllerRouterHandler] = ()
    plugins: Sequence[PluginProtocol] = ()
    middleware: Sequence[Middleware] = ()
    dependencies: Mapping[str, Provide] = field(default_factory=dict)
    lifespans: Sequence[Lifespan] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    stores: Mapping[str, Store] = field(default_factory=dict)
    consumers: Sequence[ConsumerFactory] = ()
    job_input_checks: Mapping[type, Callable[[Any], None]] = field(default_factory=dict)
