"""Issue 18.1: a null `@auth.*` never matches. An anonymous caller must not reach a deleted
account's records, nor an org-less caller the org-less rows an admin or a service key made."""

from __future__ import annotations

from tests.integration.conftest import PASSWORD, bearer, in_org

NOTES = "/collections/notes/records"
PROJECTS = "/collections/projects/records"


async def _note(client, headers, title="secret") -> str:
    created = await client.post(
        NOTES, json={"title": title, "body": "my private note"}, headers=headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _unreachable(client, url: str, record_id: str, headers=None) -> None:
    """Neither read, listed, changed nor deleted by the caller of ``headers`` (anonymous when
    None): 404 for the record, absent from the list."""
    headers = headers or {}
    assert (await client.get(f"{url}/{record_id}", headers=headers)).status_code == 404
    listed = await client.get(url, headers=headers, params={"limit": 100})
    assert listed.status_code == 200
    assert record_id not in [item["id"] for item in listed.json()["items"]]
    patched = await client.patch(f"{url}/{record_id}", json={}, headers=headers)
    assert patched.status_code == 404
    assert (await client.delete(f"{url}/{record_id}", headers=headers)).status_code == 404


async def test_the_reported_attack_a_deleted_accounts_notes_are_gone(client, sign_up, sql):
    tokens = await sign_up()
    note = await _note(client, bearer(tokens["access_token"]))
    deleted = await client.request(
        "DELETE", "/auth/me", json={"password": PASSWORD}, headers=bearer(tokens["access_token"])
    )
    assert deleted.status_code == 204
    await _unreachable(client, NOTES, note)
    # notes read `owner` in their rules: on_owner_delete="delete", so erasure took the row.
    assert sql("SELECT count(*) FROM notes WHERE id = %s", note) == [(0,)]


async def test_rows_without_an_owner_are_for_admins_only(client, sign_up, sql, admin):
    """A row whose owner is gone but kept (a collection with on_owner_delete="keep", or a row
    from before migration 0013): no anonymous or ordinary caller reaches it."""
    tokens = await sign_up()
    note = await _note(client, bearer(tokens["access_token"]))
    sql("UPDATE notes SET owner = NULL WHERE id = %s", note)
    await _unreachable(client, NOTES, note)
    stranger = await sign_up()
    await _unreachable(client, NOTES, note, bearer(stranger["access_token"]))
    assert (await client.get(f"{NOTES}/{note}", headers=admin)).status_code == 200


async def test_org_less_rows_are_not_shared_by_org_less_callers(client, sign_up, admin):
    """`org = @auth.org` with no org on either side admitted every org-less caller to every
    org-less row (made by an admin or a service key, or whose org was gone)."""
    created = await client.post(PROJECTS, json={"name": "admin's own"}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["org"] is None
    project = str(created.json()["id"])
    org_less = await sign_up()  # signs up with no org
    await _unreachable(client, PROJECTS, project, bearer(org_less["access_token"]))
    await _unreachable(client, PROJECTS, project)


async def test_org_owned_rows_stay_with_their_org_when_their_creator_goes(
    client, sign_up, add_member
):
    """projects keep their rows (on_owner_delete="keep"): the org still has its work."""
    creator, colleague = await sign_up(), await sign_up()
    org = await client.post("/orgs", json={"name": "acme"}, headers=bearer(creator["access_token"]))
    org_id = org.json()["id"]
    add_member(org_id, colleague["user"]["id"])
    switched = {
        name: bearer((await in_org(client, tokens, org_id))["access_token"])
        for name, tokens in (("creator", creator), ("colleague", colleague))
    }
    project = await client.post(PROJECTS, json={"name": "roadmap"}, headers=switched["creator"])
    assert project.status_code == 201, project.text
    # Hand the org over, then the creator leaves for good.
    await client.patch(
        f"/orgs/{org_id}/members/{colleague['user']['id']}",
        json={"role": "owner"},
        headers=switched["creator"],
    )
    gone = await client.request(
        "DELETE", "/auth/me", json={"password": PASSWORD}, headers=switched["creator"]
    )
    assert gone.status_code == 204, gone.text
    kept = await client.get(f"{PROJECTS}/{project.json()['id']}", headers=switched["colleague"])
    assert kept.status_code == 200
    assert kept.json()["owner"] is None
