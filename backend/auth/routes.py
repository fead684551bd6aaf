"""HTTP routes for /auth and /admin: parse, call the auth service, shape the answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, Router, delete, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, Parameter
from litestar.response import Redirect
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from backend.auth.deps import BEARER, auth_service_for
from backend.auth.guards import admin_only
from backend.auth.oauth_flow import SignInFlows
from backend.auth.schemas import (
    GRANT_FIELDS,
    GRANT_ONE_OF,
    Accepted,
    AdminUserUpdate,
    ApiKeyView,
    AuthorizeUrl,
    CallbackForm,
    ChangeEmail,
    ConfirmEmail,
    ConvertAccount,
    CreatedApiKey,
    DeleteMe,
    ForgotPassword,
    IdentityView,
    LinkStart,
    NewApiKey,
    NewPasskey,
    OAuthProviderView,
    PasskeyOptions,
    PasskeyRename,
    PasskeySignInOptions,
    PasskeyView,
    RecoveryCodes,
    ResetPassword,
    SecondFactor,
    SessionView,
    SignInCodeRequest,
    SignUp,
    TokenRequest,
    TokenResponse,
    TotpCode,
    TotpEnabled,
    TotpEnroll,
    TotpSecret,
    TwoFactorStatus,
    UpdateMe,
    UserView,
    VerifyRequest,
)
from backend.auth.service import AuthService, user_view
from backend.config import Settings
from backend.db.transactions import owned_session
from backend.identity import ClientInfo, Principal
from backend.mail.compose import mail_locales
from backend.mail.locales import negotiate_locale
from backend.paging import Page, Paging
from backend.problems import Problem, may_answer

log = logging.getLogger(__name__)


def _missing(*fields: str) -> Problem:
    return Problem(
        422,
        "Missing fields for this grant_type: " + ", ".join(fields),
        errors=[{"field": f, "message": "required", "source": "body"} for f in fields],
    )


def _after_answer(state: State, work: Callable[[AuthService], Awaitable[None]]) -> BackgroundTask:
    """Do ``work`` (its own transaction) once the answer is sent: routes that mail an address
    answer the same, in the same time, whether or not it has an account (issue 18.14)."""

    async def run() -> None:
        try:
            async with owned_session(state.database) as db:
                await work(auth_service_for(db, state, state.settings))
        except Exception:  # the caller has had the answer; the log keeps the failure
            log.exception("mail work after the answer failed")

    return BackgroundTask(run)


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
    auth_service: AuthService,
    client: ClientInfo,
    settings: Settings,
) -> Response[Any]:
    data = with_request_locale(data, request, settings)
    if settings.auth_require_verified_email:
        return Response(
            Accepted(status="check_your_mail"),
            status_code=HTTP_202_ACCEPTED,
            background=_after_answer(request.app.state, lambda auth: auth.sign_up_by_mail(data)),
        )
    return Response(await auth_service.sign_up(data, client), status_code=201)


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
async def token(data: TokenRequest, auth_service: AuthService, client: ClientInfo) -> TokenResponse:
    _require(data, *GRANT_FIELDS[data.grant_type])
    second = GRANT_ONE_OF.get(data.grant_type, ())
    if second and all(getattr(data, field) is None for field in second):
        raise _missing(second[0])
    if data.grant_type == "anonymous":
        return await auth_service.sign_in_anonymously(client)
    if data.grant_type == "oauth_code":
        assert data.code is not None and data.code_verifier is not None
        return await auth_service.sign_in_with_oauth_code(
            data.code, data.code_verifier, data.org_id, client
        )
    if data.grant_type == "mfa":
        assert data.mfa_token is not None
        if data.credential is not None:
            return await auth_service.sign_in_with_passkey_mfa(
                data.mfa_token, data.credential, client
            )
        if data.recovery_code is not None:  # instead of the app's code
            return await auth_service.sign_in_with_recovery_code(
                data.mfa_token, data.recovery_code, client
            )
        assert data.code is not None
        return await auth_service.sign_in_with_totp(data.mfa_token, data.code, client)
    if data.grant_type == "passkey":
        assert data.credential is not None
        return await auth_service.sign_in_with_passkey(data.credential, data.org_id, client)
    if data.grant_type == "otp":
        assert data.email is not None and data.code is not None
        return await auth_service.sign_in_with_code(data.email, data.code, data.org_id, client)
    if data.grant_type == "password":
        assert data.email is not None and data.password is not None
        return await auth_service.sign_in(data.email, data.password, data.org_id, client)
    assert data.refresh_token is not None
    return await auth_service.refresh(data.refresh_token, data.org_id)


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
    data: PasskeySignInOptions, auth_service: AuthService
) -> PasskeyOptions:
    # Anyone may ask (it is how signing in starts): per IP, under the token route's limit.
    return await auth_service.passkey_sign_in_options(data.mfa_token)


@post("/password/forgot", summary="Mail a password reset token", status_code=HTTP_202_ACCEPTED)
async def forgot_password(
    data: ForgotPassword, request: Request[Any, Any, Any]
) -> Response[Accepted]:
    # Always 202 at once, whether or not the email exists; the work follows the answer.
    work = _after_answer(request.app.state, lambda auth: auth.forgot_password(data.email))
    return Response(Accepted(), status_code=HTTP_202_ACCEPTED, background=work)


@post(
    "/mfa/totp",
    opt=may_answer(409),
    summary="Set up two-factor sign-in: a secret for an authenticator app (needs my password)",
    status_code=HTTP_200_OK,
    security=BEARER,
)
async def enroll_totp(
    data: TotpEnroll, current: Principal, auth_service: AuthService
) -> TotpSecret:
    return await auth_service.enroll_totp(current, data.password)


@post(
    "/mfa/totp/enable",
    opt=may_answer(409),
    summary="Turn two-factor sign-in on with a code from the app",
    status_code=HTTP_200_OK,
    security=BEARER,
)
async def enable_totp(data: TotpCode, current: Principal, auth_service: AuthService) -> TotpEnabled:
    """The user, and ten single-use recovery codes: shown this once, keep them safe."""
    user, codes = await auth_service.enable_totp(current, data.code)
    return TotpEnabled(**msgspec.structs.asdict(user_view(user)), recovery_codes=codes)


@delete(
    "/mfa/totp",
    opt=may_answer(409),
    summary="Turn two-factor sign-in off (needs a code from the app, or a recovery code)",
    security=BEARER,
)
async def disable_totp(data: SecondFactor, current: Principal, auth_service: AuthService) -> None:
    await auth_service.disable_totp(current, data)


@post(
    "/mfa/recovery-codes",
    opt=may_answer(409),
    summary="New recovery codes for the old ones (needs a code from the app, or a recovery code)",
    description="Only while two-factor sign-in is on (409 `totp_not_enabled`). The ten new"
    " codes are shown this once; every code before stops working.",
    status_code=HTTP_200_OK,
    security=BEARER,
)
async def regenerate_recovery_codes(
    data: SecondFactor, current: Principal, auth_service: AuthService
) -> RecoveryCodes:
    codes = await auth_service.regenerate_recovery_codes(current, data)
    return RecoveryCodes(recovery_codes=codes)


@post(
    "/convert",
    opt=may_answer(409),
    summary="Keep my anonymous account: give it an email and a password (mails a token)",
    description="The caller's own anonymous account (409 `not_anonymous` otherwise). Always"
    " `202`: the address gets a token for POST /auth/email/confirm, which sets the email"
    " (verified) and makes the account permanent, its records kept; an address that has an"
    " account gets a mail telling its owner instead.",
    status_code=HTTP_202_ACCEPTED,
    security=BEARER,
)
async def convert(
    data: ConvertAccount,
    current: Principal,
    auth_service: AuthService,
    request: Request[Any, Any, Any],
) -> Response[Accepted]:
    await auth_service.check_convertible(current)
    work = _after_answer(request.app.state, lambda auth: auth.request_conversion(current, data))
    return Response(
        Accepted(status="check_your_mail"), status_code=HTTP_202_ACCEPTED, background=work
    )


@post("/otp", summary="Mail me a one-time sign-in code", status_code=HTTP_202_ACCEPTED)
async def send_sign_in_code(
    data: SignInCodeRequest, request: Request[Any, Any, Any]
) -> Response[Accepted]:
    # Always 202 at once, whether or not the email has an account; the work follows the answer.
    work = _after_answer(request.app.state, lambda auth: auth.send_sign_in_code(data.email))
    return Response(Accepted(), status_code=HTTP_202_ACCEPTED, background=work)


@post("/password/reset", summary="Set a new password with a reset token", status_code=HTTP_200_OK)
async def reset_password(data: ResetPassword, auth_service: AuthService) -> Accepted:
    await auth_service.reset_password(data.token, data.new_password)
    return Accepted(status="password_changed")


@post(
    "/email",
    summary="Change my email: mails a token to the new address (needs my password)",
    status_code=HTTP_202_ACCEPTED,
    security=BEARER,
)
async def change_email(
    data: ChangeEmail, current: Principal, auth_service: AuthService
) -> Accepted:
    await auth_service.request_email_change(current, data)
    return Accepted()


@post(
    "/email/confirm",
    summary="Switch to the new email with the mailed token",
    status_code=HTTP_200_OK,
)
async def confirm_email(data: ConfirmEmail, auth_service: AuthService) -> UserView:
    return user_view(await auth_service.confirm_email_change(data.token))


@get(
    "/oauth/providers",
    summary="The sign-in providers this app offers (anyone may ask)",
)
async def oauth_providers(state: State) -> list[OAuthProviderView]:
    return [
        OAuthProviderView(name=p.name, display_name=p.display_name, kind=p.kind)
        for p in state.sign_in_providers.providers.values()
    ]


@get(
    "/oauth/{provider:str}/authorize",
    opt=may_answer(400, 502),
    summary="Sign in with a provider: sends the browser there (302), then back to redirect_to",
    description=(
        "Open in the browser (not with fetch). The app makes a PKCE pair first and sends its"
        " S256 code_challenge; the browser comes back to redirect_to with `?code=` (one-time,"
        " short-lived), which the app exchanges at POST /auth/token with grant_type oauth_code"
        " and its code_verifier, or with `?error=` and `error_description`. redirect_to must"
        " match AUTH_REDIRECT_URLS (else 400). Anyone may call it."
    ),
    status_code=302,
    responses={302: ResponseSpec(None, description="To the provider's sign-in page")},
)
async def oauth_authorize(
    provider: str,
    redirect_to: Annotated[str, Parameter(max_length=2048, min_length=1)],
    code_challenge: Annotated[
        str, Parameter(pattern=r"^[A-Za-z0-9_-]{43}$", description="PKCE S256 challenge")
    ],
    sign_in_flows: SignInFlows,
    code_challenge_method: Literal["S256"] = "S256",
) -> Redirect:
    return Redirect(await sign_in_flows.start(provider, redirect_to, code_challenge))


_CALLBACK = (
    "Where the provider sends the browser back: to the app's redirect_to with `?code=` (or"
    " `?error=`). A state that was never issued, was used or expired: 400 problem+json."
)


@get(
    "/oauth/{provider:str}/callback",
    opt=may_answer(400),
    summary="A provider sends the browser back here (302 to the app)",
    description=_CALLBACK,
    status_code=302,
    responses={302: ResponseSpec(None, description="Back to the app's redirect_to")},
)
async def oauth_callback(
    provider: str,
    sign_in_flows: SignInFlows,
    code: Annotated[str | None, Parameter(max_length=2048)] = None,
    oauth_state: Annotated[str | None, Parameter(query="state", max_length=200)] = None,
    error: Annotated[str | None, Parameter(max_length=200)] = None,
) -> Redirect:
    return Redirect(await sign_in_flows.finish(provider, code, oauth_state, error))


@post(
    "/oauth/{provider:str}/callback",
    opt=may_answer(400),
    summary="A provider posts the browser back here (form_post: Apple; 302 to the app)",
    description=_CALLBACK,
    status_code=302,
    responses={302: ResponseSpec(None, description="Back to the app's redirect_to")},
)
async def oauth_callback_form(
    provider: str,
    data: Annotated[CallbackForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    sign_in_flows: SignInFlows,
) -> Redirect:
    return Redirect(await sign_in_flows.finish(provider, data.code, data.state, data.error))


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
    async def logout(self, current: Principal, auth_service: AuthService) -> None:
        await auth_service.logout(current)

    @get("/mfa", summary="My two-factor sign-in: on or off, recovery codes left", security=BEARER)
    async def two_factor(self, current: Principal, auth_service: AuthService) -> TwoFactorStatus:
        return await auth_service.two_factor_status(current)

    @get("/me", summary="The current user", security=BEARER)
    async def me(self, current: Principal, auth_service: AuthService) -> UserView:
        return user_view(await auth_service.get_user(current))

    @patch("/me", summary="Change my name, my mails' language or my password", security=BEARER)
    async def update_me(
        self, data: UpdateMe, current: Principal, auth_service: AuthService
    ) -> UserView:
        return user_view(await auth_service.update_me(current, data))

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
        self, data: DeleteMe, current: Principal, auth_service: AuthService
    ) -> None:
        await auth_service.delete_me(current, data)

    @get("/sessions", summary="My signed-in sessions", security=BEARER)
    async def sessions(
        self, current: Principal, auth_service: AuthService, paging: Paging
    ) -> Page[SessionView]:
        return await auth_service.list_sessions(current, paging)

    @delete("/sessions/{session_id:uuid}", summary="Revoke one of my sessions", security=BEARER)
    async def revoke_session(
        self, session_id: UUID, current: Principal, auth_service: AuthService
    ) -> None:
        await auth_service.revoke_session(current, session_id)

    @post(
        "/verify",
        summary="Without a token: mail me a verification token. With one: confirm it.",
        status_code=HTTP_200_OK,
    )
    async def verify(
        self, data: VerifyRequest, principal: Principal | None, auth_service: AuthService
    ) -> UserView | Accepted:
        if data.token is not None:
            return user_view(await auth_service.confirm_verification(data.token, principal))
        if principal is None:
            raise Problem(
                401,
                "Sign in to request a verification mail, or send the token you received",
                code="unauthenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        await auth_service.request_verification(principal)
        return Accepted()

    @get("/identities", summary="My linked sign-in provider accounts", security=BEARER)
    async def identities(
        self, current: Principal, auth_service: AuthService, paging: Paging
    ) -> Page[IdentityView]:
        return await auth_service.list_identities(current, paging)

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
        self, identity_id: UUID, current: Principal, auth_service: AuthService
    ) -> None:
        await auth_service.unlink_identity(current, identity_id)

    @get("/api-keys", summary="My API keys (never their secrets)", security=BEARER)
    async def api_keys(
        self, current: Principal, auth_service: AuthService, paging: Paging
    ) -> Page[ApiKeyView]:
        return await auth_service.list_api_keys(current, paging)

    @post("/api-keys", summary="Create an API key; the secret is shown once", security=BEARER)
    async def create_api_key(
        self, data: NewApiKey, current: Principal, auth_service: AuthService, state: State
    ) -> CreatedApiKey:
        served = frozenset(collection.name for collection in state.collections)
        return await auth_service.create_api_key(current, data, served)

    @post(
        "/passkeys/register/options",
        opt=may_answer(503),
        summary="Options to register a passkey (navigator.credentials.create); signed-in"
        " sessions only, not API keys",
        status_code=HTTP_200_OK,
        security=BEARER,
    )
    async def passkey_registration_options(
        self, current: Principal, auth_service: AuthService
    ) -> PasskeyOptions:
        return await auth_service.passkey_registration_options(current)

    @post(
        "/passkeys",
        opt=may_answer(409, 503),
        summary="Register a passkey: the browser's answer to the registration options",
        security=BEARER,
    )
    async def register_passkey(
        self, data: NewPasskey, current: Principal, auth_service: AuthService
    ) -> PasskeyView:
        return await auth_service.register_passkey(current, data)

    @get("/passkeys", summary="My passkeys", security=BEARER)
    async def passkeys(
        self, current: Principal, auth_service: AuthService, paging: Paging
    ) -> Page[PasskeyView]:
        return await auth_service.list_passkeys(current, paging)

    @patch("/passkeys/{passkey_id:uuid}", summary="Rename one of my passkeys", security=BEARER)
    async def rename_passkey(
        self, passkey_id: UUID, data: PasskeyRename, current: Principal, auth_service: AuthService
    ) -> PasskeyView:
        return await auth_service.rename_passkey(current, passkey_id, data.name)

    @delete(
        "/passkeys/{passkey_id:uuid}",
        opt=may_answer(409),
        summary="Remove one of my passkeys (409 last_sign_in_method when it is the last way in)",
        security=BEARER,
    )
    async def remove_passkey(
        self, passkey_id: UUID, current: Principal, auth_service: AuthService
    ) -> None:
        await auth_service.remove_passkey(current, passkey_id)

    @delete("/api-keys/{key_id:uuid}", summary="Revoke an API key now", security=BEARER)
    async def revoke_api_key(
        self, key_id: UUID, current: Principal, auth_service: AuthService
    ) -> None:
        await auth_service.revoke_api_key(current, key_id)


class UserPage(Page[UserView], frozen=True, kw_only=True):
    total: int  # how many users match, on every page (the count comes with the page's query)


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]
    security = BEARER
    guards = [admin_only]

    @get("/users", summary="All users (admins only)")
    async def users(
        self,
        auth_service: AuthService,
        paging: Paging,
        q: Annotated[
            str | None,
            Parameter(
                required=False,
                max_length=320,
                description="Part of the email or name, in any case",
            ),
        ] = None,
        role: Literal["user", "admin"] | None = None,
    ) -> UserPage:
        users, total = await auth_service.list_users(paging, search=q, role=role)
        page = users.map(user_view)
        return UserPage(items=page.items, next_cursor=page.next_cursor, total=total)

    @delete(
        "/users/{user_id:uuid}",
        summary="Delete a user (admins only)",
        description="As DELETE /auth/me does, without the password; 409 `last_owner` the same.",
    )
    async def delete_user(self, user_id: UUID, auth_service: AuthService) -> None:
        await auth_service.admin_delete_user(user_id)

    @patch("/users/{user_id:uuid}", summary="Change a user's role or disable them (admins only)")
    async def update_user(
        self, user_id: UUID, data: AdminUserUpdate, auth_service: AuthService
    ) -> UserView:
        return user_view(await auth_service.admin_update_user(user_id, data))


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
        AdminController,
    ]
