"""HTTP routes of the ways in a signed-in user holds beside the password: linked provider
accounts, API keys and passkeys (/auth/identities, /auth/api-keys, /auth/passkeys). Each needs
the bearer; linking and passkeys take a session, not an API key."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK

from backend.auth.deps import BEARER
from backend.auth.identities import Identities
from backend.auth.keys import ApiKeys
from backend.auth.oauth_flow import SignInFlows
from backend.auth.passkey_schemas import NewPasskey, PasskeyOptions, PasskeyRename
from backend.auth.passkeys import Passkeys
from backend.auth.schemas import (
    ApiKeyView,
    AuthorizeUrl,
    CreatedApiKey,
    IdentityView,
    LinkStart,
    NewApiKey,
    PasskeyView,
)
from backend.identity import Principal
from backend.paging import Page, Paging
from backend.problems import may_answer


class CredentialsController(Controller):
    path = "/auth"
    tags = ["auth"]

    @get("/identities", summary="My linked sign-in provider accounts", security=BEARER)
    async def identities(
        self, current: Principal, identity_service: Identities, paging: Paging
    ) -> Page[IdentityView]:
        return await identity_service.list_identities(current, paging)

    @post(
        "/identities/{provider:str}/link",
        opt=may_answer(400, 502),
        summary="Link a sign-in provider to my account: the URL to send the browser to",
        description=(
            "A signed-in session only (not an API key). The browser goes to `url`, then back"
            " to redirect_to with `?code=`; POST /auth/token with grant_type oauth_code and"
            " the code_verifier links the provider's account to mine (409 `identity_taken` if"
            " it signs in to another account) and answers a new session of my account."
        ),
        status_code=HTTP_200_OK,
        security=BEARER,
    )
    async def link_identity(
        self, provider: str, data: LinkStart, current: Principal, sign_in_flows: SignInFlows
    ) -> AuthorizeUrl:
        url = await sign_in_flows.start(
            provider, data.redirect_to, data.code_challenge, source="body", link=current
        )
        return AuthorizeUrl(url=url)

    @delete(
        "/identities/{identity_id:uuid}",
        opt=may_answer(409),
        summary="Unlink a sign-in provider from my account (not my last way to sign in: 409)",
        security=BEARER,
    )
    async def unlink_identity(
        self, identity_id: UUID, current: Principal, identity_service: Identities
    ) -> None:
        await identity_service.unlink_identity(current, identity_id)

    @get("/api-keys", summary="My API keys (never their secrets)", security=BEARER)
    async def api_keys(
        self, current: Principal, api_key_service: ApiKeys, paging: Paging
    ) -> Page[ApiKeyView]:
        return await api_key_service.list_api_keys(current, paging)

    @post("/api-keys", summary="Create an API key; the secret is shown once", security=BEARER)
    async def create_api_key(
        self, data: NewApiKey, current: Principal, api_key_service: ApiKeys, state: State
    ) -> CreatedApiKey:
        served = frozenset(collection.name for collection in state.collections)
        return await api_key_service.create_api_key(current, data, served)

    @post(
        "/passkeys/register/options",
        opt=may_answer(503),
        summary="Options to register a passkey (navigator.credentials.create); signed-in"
        " sessions only, not API keys",
        status_code=HTTP_200_OK,
        security=BEARER,
    )
    async def passkey_registration_options(
        self, current: Principal, passkey_service: Passkeys
    ) -> PasskeyOptions:
        return await passkey_service.passkey_registration_options(current)

    @post(
        "/passkeys",
        opt=may_answer(409, 503),
        summary="Register a passkey: the browser's answer to the registration options",
        security=BEARER,
    )
    async def register_passkey(
        self, data: NewPasskey, current: Principal, passkey_service: Passkeys
    ) -> PasskeyView:
        return await passkey_service.register_passkey(current, data)

    @get("/passkeys", summary="My passkeys", security=BEARER)
    async def passkeys(
        self, current: Principal, passkey_service: Passkeys, paging: Paging
    ) -> Page[PasskeyView]:
        return await passkey_service.list_passkeys(current, paging)

    @patch("/passkeys/{passkey_id:uuid}", summary="Rename one of my passkeys", security=BEARER)
    async def rename_passkey(
        self, passkey_id: UUID, data: PasskeyRename, current: Principal, passkey_service: Passkeys
    ) -> PasskeyView:
        return await passkey_service.rename_passkey(current, passkey_id, data.name)

    @delete(
        "/passkeys/{passkey_id:uuid}",
        opt=may_answer(409),
        summary="Remove one of my passkeys (409 last_sign_in_method when it is the last way in)",
        security=BEARER,
    )
    async def remove_passkey(
        self, passkey_id: UUID, current: Principal, passkey_service: Passkeys
    ) -> None:
        await passkey_service.remove_passkey(current, passkey_id)

    @delete("/api-keys/{key_id:uuid}", summary="Revoke an API key now", security=BEARER)
    async def revoke_api_key(
        self, key_id: UUID, current: Principal, api_key_service: ApiKeys
    ) -> None:
        await api_key_service.revoke_api_key(current, key_id)
