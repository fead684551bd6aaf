"""Load the relay's consumers: built-in ones and those named in RELAY_CONSUMERS."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from backend.events.relay import Consumer

ConsumerFactory = Callable[[Any], Consumer]


def load_factory(path: str) -> ConsumerFactory:
    """``package.module:factory`` → the factory (it takes the app, returns a consumer)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"RELAY_CONSUMERS entry {path!r} is not of the form module:factory")
    factory: ConsumerFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def build_consumers(app: Any, paths: Sequence[str]) -> list[Consumer]:
    return [load_factory(path)(app) for path in paths]
