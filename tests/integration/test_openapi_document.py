"""The document is finished when it is first needed (backend/openapi_document.py): what an app
serves, and what it holds queries to, never depend on what was asked before."""

from __future__ import annotations

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
