"""The document is finished when it is first needed (backend/openapi_document.py): what an app
serves, and what it holds queries to, never depend on what was asked before."""

from __future__ import annotations

import msgspec

from backend.app import create_app
from backend.openapi_document import finished_document
from tests.integration.conftest import bearer


async def test_the_document_an_app_serves_first_is_the_finished_one(client):
    served = await client.get("/schema/openapi.json")
    assert served.status_code == 200, served.text
    schemas = served.json()["components"]["schemas"]
    assert schemas["ChangeEmail"]["additionalProperties"] is False
    assert {v["properties"]["grant_type"]["const"] for v in schemas["TokenRequest"]["oneOf"]} >= {
        "password",
        "refresh_token",
    }


async def test_the_first_query_an_app_sees_is_held_to_its_type(client, sign_up):
    # Signing up sends no query: the usage request is the app's first one that does.
    headers = bearer((await sign_up())["access_token"])
    response = await client.get("/ai/usage", params={"to": "1700000000"}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "to", "message": "is not a date-time (RFC 3339)", "source": "query"}
    ]


def test_bounds_that_are_settings_are_stated_as_this_app_has_them(settings, clock):
    """k of ask and search is refused past ASK_MAX_K / VECTOR_SEARCH_MAX_K: the document says
    so, with this app's values, so a generated client never sends one the server refuses."""
    mine = msgspec.structs.replace(settings, ask_max_k=7, vector_search_max_k=30)
    schemas = finished_document(create_app(mine, clock=clock)).to_schema()["components"]["schemas"]
    assert schemas["AskRequest"]["properties"]["k"] | {"default": 5} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 7,
        "default": 5,
    }
    assert schemas["SearchRequest"]["properties"]["k"]["maximum"] == 30
