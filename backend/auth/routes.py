"""HTTP routes for /auth: parse, call the auth services, shape the answer. Signing up and in,
tokens and the account are here; what mails or takes a mailed token is in mail_routes.py,
two-factor in two_factor_routes.py, the trip to a provider in oauth_routes.py, the held
credentials in credential_routes.py, /admin in admin_routes.py. The routers, with their per-IP
limits, are put together here (``auth_routers``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, Router, delete, get, patch, post
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from backend.auth.accounts import Accounts
from backend.auth.admin_routes import AdminController
from backend.auth.anonymous import AnonymousUsers
from backend.auth.core import user_view
from backend.auth.credential_routes import CredentialsController
from backend.auth.deps import BEARER
from backend.auth.identities import Identities
from backend.auth.mail_routes import (
    after_answer,
    change_email,
    confirm_email,
    convert,
    forgot_password,
    reset_password,
    send_sign_in_code,
)
from backend.auth.mailed import MailedTokens
from backend.auth.oauth_routes import (
    oauth_authorize,
    oauth_callback,
    oauth_callback_form,
    oauth_providers,
)
from backend.auth.passkey_schemas import PasskeyOptions
from backend.auth.passkeys import Passkeys
from backend.auth.schemas import (
    GRANT_FIELDS,
    GRANT_ONE_OF,
    Accepted,
    DeleteMe,
    PasskeySignInOptions,
    SessionView,
    SignUp,
    TokenRequest,
    TokenResponse,
    TwoFactorStatus,
    UpdateMe,
    UserView,
    VerifyRequest,
)
from backend.auth.sessions import Sessions
from backend.auth.two_factor import TwoFactor
from backend.auth.two_factor_routes import (
    disable_totp,
    enable_totp,
    enroll_totp,
    regenerate_recovery_codes,
)
from backend.config import Settings
from backend.identity import ClientInfo, Principal
from backend.mail.compose import mail_locales
from backend.mail.locales import negotiate_locale
from backend.paging import Page, Paging
from backend.problems import Problem, may_answer


def _missing(*fields: str) -> Problem:
    return Problem(
        422,
        "Missing fields for this grant_type: " + ", ".join(fields),
        errors=[{"field": f, "message": "required", "source": "body"} for f in fields],
    )


@post(
    "/signup",
    opt=may_answer(409),
    summary="Create an account and sign in (when verification is required: mail a link, 202)",
    status_code=201,
    responses={
        # Declared one by one: as a union the two bodies were each valid for both codes.
        201: ResponseSpec(data_container=TokenResponse, description="Signed up and in"),
        202: ResponseSpec(
            data_container=Accepted,
            description="AUTH_REQUIRE_VERIFIED_EMAIL: check your mail (the same answer for"
            " every address)",
        ),
    },
)
async def sign_up(
    data: SignUp,
    request: Request[Any, Any, Any],
    account_service: Accounts,
    client: ClientInfo,
    settings: Settings,
) -> Response[Any]:
    data = with_request_locale(data, request, settings)
    if settings.auth_require_verified_email:
        return Response(
            Accepted(status="check_your_mail"),
            status_code=HTTP_202_ACCEPTED,
            background=after_answer(
                request.app.state, Accounts.over, lambda accounts: accounts.sign_up_by_mail(data)
            ),
        )
    return Response(await account_service.sign_up(data, client), status_code=201)


def with_request_locale(
    data: SignUp, request: Request[Any, Any, Any], settings: Settings
) -> SignUp:
    """The sign-up with a locale: its own, else the best of the request's Accept-Language
    that mail can be written in, else none (English)."""
    if data.locale is not None:
        return data
    found = negotiate_locale(request.headers.get("accept-language"), mail_locales(settings))
    return data if found is None else msgspec.structs.replace(data, locale=found)


@post(
    "/token",
    opt=may_answer(401, 403, 409, 429, 503),
    summary="Sign in (password; otp: a mailed code; passkey; oauth_code: a sign-in provider's;"
    " then mfa when two-factor is on; anonymous: a new anonymous user) or refresh",
    status_code=HTTP_200_OK,
)
async def token(
    data: TokenRequest,
    client: ClientInfo,
    session_service: Sessions,
    mailed_token_service: MailedTokens,
    passkey_service: Passkeys,
    two_factor_service: TwoFactor,
    identity_service: Identities,
    anonymous_service: AnonymousUsers,
) -> TokenResponse:
    """The one door in: each grant_type is answered by the service of its concern."""
    _require(data, *GRANT_FIELDS[data.grant_type])
    second = GRANT_ONE_OF.get(data.grant_type, ())
    if second and all(getattr(data, field) is None for field in second):
        raise _missing(second[0])
    if data.grant_type == "anonymous":
        return await anonymous_service.sign_in_anonymously(client)
    if data.grant_type == "oauth_code":
        assert data.code is not None and data.code_verifier is not None
        return await identity_service.sign_in_with_oauth_code(
            data.code, data.code_verifier, data.org_id, client
        )
    if data.grant_type == "mfa":
        assert data.mfa_token is not None
        if data.credential is not None:
            return await passkey_service.sign_in_with_passkey_mfa(
                data.mfa_token, data.credential, client
            )
        if data.recovery_code is not None:  # instead of the app's code
            return await two_factor_service.sign_in_with_recovery_code(
                data.mfa_token, data.recovery_code, client
            )
        assert data.code is not None
        return await two_factor_service.sign_in_with_totp(data.mfa_token, data.code, client)
    if data.grant_type == "passkey":
        assert data.credential is not None
        return await passkey_service.sign_in_with_passkey(data.credential, data.org_id, client)
    if data.grant_type == "otp":
        assert data.email is not None and data.code is not None
        return await mailed_token_service.sign_in_with_code(
            data.email, data.code, data.org_id, client
        )
    if data.grant_type == "password":
        assert data.email is not None and data.password is not None
        return await session_service.sign_in(data.email, data.password, data.org_id, client)
    assert data.refresh_token is not None
    return await session_service.refresh(data.refresh_token, data.org_id)


def _require(data: TokenRequest, *fields: str) -> None:
    """422 naming each field this grant_type needs and the body lacks."""
    missing = [field for field in fields if getattr(data, field) is None]
    if missing:
        raise _missing(*missing)


@post(
    "/passkeys/sign-in/options",
    opt=may_answer(401, 409, 503),
    summary="Options to sign in with a passkey (grant_type passkey), or, with an mfa_token, to"
    " complete two-factor sign-in with one (grant_type mfa)",
    status_code=HTTP_200_OK,
)
async def passkey_sign_in_options(
    data: PasskeySignInOptions, passkey_service: Passkeys
) -> PasskeyOptions:
    # Anyone may ask (it is how signing in starts): per IP, under the token route's limit.
    return await passkey_service.passkey_sign_in_options(data.mfa_token)


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post(
        "/logout",
        opt=may_answer(400),
        summary="Sign out: revoke this session",
        status_code=HTTP_204_NO_CONTENT,
        security=BEARER,
    )
    async def logout(self, current: Principal, session_service: Sessions) -> None:
        await session_service.logout(current)

    @get("/mfa", summary="My two-factor sign-in: on or off, recovery codes left", security=BEARER)
    async def two_factor(
        self, current: Principal, two_factor_service: TwoFactor
    ) -> TwoFactorStatus:
        return await two_factor_service.two_factor_status(current)

    @get("/me", summary="The current user", security=BEARER)
    async def me(self, current: Principal, account_service: Accounts) -> UserView:
        return user_view(await account_service.me(current))

    @patch("/me", summary="Change my name, my mails' language or my password", security=BEARER)
    async def update_me(
        self, data: UpdateMe, current: Principal, account_service: Accounts
    ) -> UserView:
        return user_view(await account_service.update_me(current, data))

    @delete(
        "/me",
        summary="Delete my account (needs my password)",
        description=(
            "Ends every session, deletes the account's API keys, jobs and schedules; records it"
            " owned go or stay without an owner, as each collection says. 409 `last_owner`"
            " (with `orgs`) while it is the only owner of an org. An anonymous account without"
            " a password needs none."
        ),
        security=BEARER,
    )
    async def delete_me(
        self, data: DeleteMe, current: Principal, account_service: Accounts
    ) -> None:
        await account_service.delete_me(current, data)

    @get("/sessions", summary="My signed-in sessions", security=BEARER)
    async def sessions(
        self, current: Principal, session_service: Sessions, paging: Paging
    ) -> Page[SessionView]:
        return await session_service.list_sessions(current, paging)

    @delete("/sessions/{session_id:uuid}", summary="Revoke one of my sessions", security=BEARER)
    async def revoke_session(
        self, session_id: UUID, current: Principal, session_service: Sessions
    ) -> None:
        await session_service.revoke_session(current, session_id)

    @post(
        "/verify",
        summary="Without a token: mail me a verification token. With one: confirm it.",
        status_code=HTTP_200_OK,
    )
    async def verify(
        self,
        data: VerifyRequest,
        principal: Principal | None,
        mailed_token_service: MailedTokens,
    ) -> UserView | Accepted:
        if data.token is not None:
            return user_view(await mailed_token_service.confirm_verification(data.token, principal))
        if principal is None:
            raise Problem(
                401,
                "Sign in to request a verification mail, or send the token you received",
                code="unauthenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        await mailed_token_service.request_verification(principal)
        return Accepted()


def _rate_limit(bucket: str, per_minute: int) -> RateLimitConfig:
    def identify(request: Request[Any, Any, Any]) -> str:
        return f"{bucket}:{get_remote_address(request)}"

    return RateLimitConfig(rate_limit=("minute", per_minute), identifier_for_request=identify)


def auth_routers(settings: Settings) -> list[Router | type[Controller]]:
    """The auth routes, each abuse-prone group behind its own per-IP limit."""
    return [
        Router(
            "/auth",
            route_handlers=[sign_up],
            middleware=[_rate_limit("signup", settings.rate_limit_signup_per_minute).middleware],
            tags=["auth"],
        ),
        Router(
            "/auth",
            route_handlers=[token, passkey_sign_in_options],
            middleware=[_rate_limit("token", settings.rate_limit_token_per_minute).middleware],
            tags=["auth"],
        ),
        Router(
            "/auth",  # the routes that send mail or take a mailed token
            route_handlers=[
                forgot_password,
                reset_password,
                send_sign_in_code,
                change_email,
                confirm_email,
                enroll_totp,
                enable_totp,
                disable_totp,
                regenerate_recovery_codes,
                convert,
            ],
            middleware=[
                _rate_limit("password", settings.rate_limit_password_per_minute).middleware
            ],
            tags=["auth"],
        ),
        Router(
            "/auth",  # a trip to a sign-in provider: state kept in Redis, calls to the provider
            route_handlers=[oauth_authorize, oauth_callback, oauth_callback_form],
            middleware=[_rate_limit("oauth", settings.rate_limit_oauth_per_minute).middleware],
            tags=["auth"],
        ),
        Router("/auth", route_handlers=[oauth_providers], tags=["auth"]),
        AuthController,
        CredentialsController,
        AdminController,
    ]
