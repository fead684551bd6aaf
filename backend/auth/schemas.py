"""API shapes for /auth: what clients send and what they get back (the passkey ceremony's, the
browser's WebAuthn JSON among them, are in passkey_schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from backend.auth.passkey_schemas import PasskeyAssertion
from backend.auth.scopes import Scope
from backend.lib.names import SPACE, name_meta
from backend.mail.locales import LOCALE_MAX_LENGTH, LOCALE_PATTERN

Email = Annotated[
    str,
    msgspec.Meta(
        max_length=320,
        pattern=rf"^[^@{SPACE}]+@[^@{SPACE}]+\.[^@{SPACE}]+$",
        description="An email address",
        examples=["ada@example.com"],
    ),
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
Name = Annotated[str, name_meta(200)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Locale = Annotated[
    str,
    msgspec.Meta(
        max_length=LOCALE_MAX_LENGTH,
        pattern=LOCALE_PATTERN,
        description="A language tag (BCP 47): the language of the user's mails",
        examples=["de", "en-GB"],
    ),
]
# Six digits: a mailed sign-in code, or an authenticator app's.
Code = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
# A two-factor recovery code as shown (``abcde-23456``); any case, the dash optional.
RecoveryCodeText = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{5}-?[A-Za-z0-9]{5}$", examples=["k7mqd-x2p9a"])
]
# grant_type otp and mfa: six digits; oauth_code: the one-time code the sign-in callback sent.
GrantCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^([0-9]{6}|lbo_[A-Za-z0-9_-]{43})$",
        description="Six digits (otp, mfa), or the lbo_ code of a sign-in callback (oauth_code)",
    ),
]
# RFC 7636: the app's PKCE verifier, and the S256 challenge it sends first.
CodeVerifier = Annotated[
    str, msgspec.Meta(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")
]
CodeChallenge = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_-]{43}$",
        description="BASE64URL(SHA-256(code_verifier)) without padding (PKCE, S256)",
    ),
]
RedirectTo = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        description="Where the browser comes back to; must match AUTH_REDIRECT_URLS",
    ),
]


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    email: str | None  # None for an anonymous user until it confirms an address
    name: str | None
    role: str
    email_verified: bool
    created_at: datetime
    totp_enabled: bool = False
    is_anonymous: bool = False
    locale: str | None = None  # the language of the user's mails; None: English


class TotpEnabled(UserView, frozen=True, kw_only=True):
    """The user, two-factor sign-in on, and its recovery codes: shown this once."""

    recovery_codes: list[str]


class RecoveryCodes(msgspec.Struct, frozen=True, kw_only=True):
    """A new set of recovery codes, shown this once; the ones before no longer work."""

    recovery_codes: list[str]


class TwoFactorStatus(msgspec.Struct, frozen=True, kw_only=True):
    totp_enabled: bool
    recovery_codes_left: int  # unused recovery codes (0 while two-factor sign-in is off)


class SecondFactor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Proof of the second factor: the app's current code, or one unused recovery code."""

    code: Code | None = None
    recovery_code: RecoveryCodeText | None = None


class ConvertAccount(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An anonymous account's email and password, in force once the mailed token confirms."""

    email: Email
    password: Password
    name: Name | None = None


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    user: UserView


class SignUp(msgspec.Struct, frozen=True, kw_only=True):
    email: Email
    password: Password
    name: Name | None = None
    # The language of the account's mails; unset: the best of the request's Accept-Language
    # that mail templates exist for, else none (English).
    locale: Locale | None = None


GrantType = Literal["password", "otp", "passkey", "oauth_code", "mfa", "anonymous", "refresh_token"]
# The fields each grant_type needs (not null); POST /auth/token refuses a grant without one
# with a 422 naming the first missing, and the OpenAPI document states them as a oneOf.
GRANT_FIELDS: dict[str, tuple[str, ...]] = {
    "password": ("email", "password"),
    "otp": ("email", "code"),
    "passkey": ("credential",),
    "oauth_code": ("code", "code_verifier"),
    "mfa": ("mfa_token",),
    "anonymous": (),
    "refresh_token": ("refresh_token",),
}
# ... and one at least of these: mfa's second factor (code first, when none is given).
GRANT_ONE_OF: dict[str, tuple[str, ...]] = {"mfa": ("code", "recovery_code", "credential")}


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OAuth2-shaped: grant_type password (email, password), otp (email, code: a mailed
    sign-in code), passkey (credential: an assertion for options from
    POST /auth/passkeys/sign-in/options), oauth_code (code: what a sign-in provider's callback
    sent the app, code_verifier: the app's PKCE verifier), mfa (mfa_token, and code,
    recovery_code or credential: the second step of two-factor sign-in), anonymous (nothing: a
    new anonymous user) or refresh_token (refresh_token).

    ``org_id`` makes that org the session's active org (the token's ``org`` claim).
    """

    grant_type: GrantType
    email: Email | None = None
    password: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    code: GrantCode | None = None
    code_verifier: CodeVerifier | None = None
    credential: PasskeyAssertion | None = None
    mfa_token: Token | None = None
    recovery_code: RecoveryCodeText | None = None
    refresh_token: Token | None = None
    org_id: UUID | None = None


class PasskeySignInOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Without ``mfa_token``: sign in with any passkey of this site (the browser offers the
    person theirs). With it: the second step of two-factor sign-in, with a passkey of that
    account."""

    mfa_token: Token | None = None


class TotpEnroll(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    password: Annotated[str, msgspec.Meta(max_length=256)]


class TotpSecret(msgspec.Struct, frozen=True, kw_only=True):
    secret: str
    otpauth_uri: str


class TotpCode(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: Code


class PasskeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None


class SignInCodeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email


class ChangeEmail(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    new_email: Email
    password: Annotated[str, msgspec.Meta(max_length=256)]


class ConfirmEmail(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: Token


class DeleteMe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Required, except from an anonymous account (it has none).
    password: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class UpdateMe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name | None = None
    locale: Locale | None = None  # the language of my mails
    current_password: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    new_password: Password | None = None


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    org_id: UUID | None
    current: bool = False  # whether it is the session asking


class VerifyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Without a token: send (again) a verification mail to me. With one: confirm it."""

    token: Token | None = None


class ForgotPassword(msgspec.Struct, frozen=True, kw_only=True):
    email: Email


class ResetPassword(msgspec.Struct, frozen=True, kw_only=True):
    token: Token
    new_password: Password


class Accepted(msgspec.Struct, frozen=True):
    status: str = "accepted"


class NewApiKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, name_meta(100)]
    expires_at: datetime | None = None
    service: bool = False
    org_id: UUID | None = None
    # read: GET, search, ask; write: everything else; keys: may create keys (never wider).
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: ["read", "write"]
    )
    # Only these collections (their routes and realtime channels); null: every collection.
    collections: (
        Annotated[list[Annotated[str, msgspec.Meta(max_length=63)]], msgspec.Meta(max_length=100)]
        | None
    ) = None


class ApiKeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    prefix: str
    service: bool = False
    org_id: UUID | None
    scopes: list[str]
    collections: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class CreatedApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """The secret appears here once; only its hash is kept."""

    key: str
    api_key: ApiKeyView


class AdminUserUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: Literal["user", "admin"] | None = None
    disabled: bool | None = None
    reset_totp: bool = False  # turn the user's two-factor sign-in off (a lost phone)


class OAuthProviderView(msgspec.Struct, frozen=True, kw_only=True):
    """A sign-in provider this app offers: GET /auth/oauth/{name}/authorize starts it."""

    name: str
    display_name: str
    kind: Literal["oidc", "github", "discord"]


class LinkStart(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    redirect_to: RedirectTo
    code_challenge: CodeChallenge
    code_challenge_method: Literal["S256"] = "S256"


class AuthorizeUrl(msgspec.Struct, frozen=True, kw_only=True):
    """Send the browser here (the provider's page); it comes back to redirect_to."""

    url: str


class CallbackForm(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer posted back (response_mode form_post: Sign in with Apple)."""

    state: str | None = None
    code: str | None = None
    error: str | None = None
    user: str | None = None  # Apple's first-time name, unused


class IdentityView(msgspec.Struct, frozen=True, kw_only=True):
    """A provider account linked to mine."""

    id: UUID
    provider: str
    email: str | None
    email_verified: bool
    created_at: datetime
