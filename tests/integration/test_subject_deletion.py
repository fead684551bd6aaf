"""A deleted user's, org's or key's budget override goes with it, by trigger (migration 0015):
auth and orgs no longer import the gateway to clean up after themselves."""

from __future__ import annotations

from tests.integration.conftest import PASSWORD, bearer, in_org


async def test_deleting_a_user_or_an_org_drops_their_budget_overrides(client, sign_up, admin, sql):
    alice = await sign_up()
    headers = bearer(alice["access_token"])
    org = (await client.post("/orgs", json={"name": "Acme"}, headers=headers)).json()
    headers = bearer((await in_org(client, alice, org["id"]))["access_token"])
    key = (await client.post("/auth/api-keys", json={"name": "k"}, headers=headers)).json()
    subjects = {
        "user": alice["user"]["id"],
        "org": org["id"],
        "key": key["api_key"]["id"],
    }
    for kind, subject in subjects.items():
        put = await client.put(
            f"/ai/budgets/{kind}/{subject}", json={"tokens_per_period": 10}, headers=admin
        )
        assert put.status_code == 200, put.text

    def overrides() -> set[str]:
        return {kind for (kind,) in sql("SELECT subject_kind FROM ai_budgets")}

    assert overrides() == {"user", "org", "key"}
    assert (await client.delete(f"/orgs/{org['id']}", headers=headers)).status_code == 204
    assert overrides() == {"user", "key"}
    gone = await client.request(
        "DELETE", "/auth/me", json={"password": PASSWORD}, headers=bearer(alice["access_token"])
    )
    assert gone.status_code == 204, gone.text
    assert overrides() == set()  # the user's, and the key deleted with the user
