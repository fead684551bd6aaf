"""How many rows a list route returns: ``?limit=`` (PAGE_DEFAULT_LIMIT when absent, at most
PAGE_MAX_LIMIT) and ``?offset=``, as the ``paging`` dependency of every route that pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar.params import Parameter

from backend.config import Settings
from backend.problems import field_problem

MAX_OFFSET = 2**63 - 1  # Postgres' bigint: past it OFFSET is an error, not an empty page


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int


def provide_paging(
    settings: Settings,
    limit: Annotated[
        int | None,
        Parameter(
            ge=1,
            required=False,
            description="Rows to return: PAGE_DEFAULT_LIMIT when absent, at most PAGE_MAX_LIMIT",
        ),
    ] = None,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> Paging:
    if limit is None:
        return Paging(settings.page_default_limit, offset)
    if limit > settings.page_max_limit:
        raise field_problem(
            f"limit must be at most {settings.page_max_limit} (PAGE_MAX_LIMIT)",
            "limit",
            f"must be at most {settings.page_max_limit}",
            source="query",
        )
    return Paging(limit, offset)
