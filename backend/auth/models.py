"""Identity tables: users, sessions, refresh tokens, API keys, single-use email tokens, and
the orgs people belong to (orgs, memberships, invitations). Auth checks memberships on every
key use and org switch, so the tenancy tables sit here, at the bottom of the layers, while the
org routes and service (backend/orgs) sit above auth."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import BigIntBase, UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

USER_ROLES = ("user", "admin")


class User(UUIDv7AuditBase):
    __tablename__ = "users"
    __table_args__ = (
        Index("users_email_lower_key", func.lower(text("email")), unique=True),
        # The idle sweep's way to the anonymous users (backend/auth/anonymous.py).
        Index(
            "users_anonymous_created_at_idx", "created_at", postgresql_where=text("is_anonymous")
        ),
    )

    # None for an anonymous user (grant_type anonymous) until it confirms an address.
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Made by grant_type anonymous; false from its first way back in of its own
    # (became_permanent: a confirmed email and password, an OAuth identity, a passkey).
    is_anonymous: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # The language of the user's mails (a BCP 47 tag: de, de-AT); None: English.
    locale: Mapped[str | None] = mapped_column(String(35), default=None)
    # Two-factor sign-in (backend/auth/totp.py): the sealed secret, set when enrolling and
    # in force from totp_enabled_at; the last accepted time step refuses a replayed code.
    totp_secret: Mapped[str | None] = mapped_column(String(300), default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)


class AuthSession(UUIDv7AuditBase):
    """One signed-in device: a family of refresh tokens, revoked together."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("orgs.id", ondelete="SET NULL"), default=None
    )
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)


class RefreshToken(BigIntBase):
    __tablename__ = "auth_refresh_tokens"

    session_id: Mapped[UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class RecoveryCode(BigIntBase):
    """One of the ten single-use codes that stand in for the authenticator app's code
    (backend/auth/recovery_codes.py). Stored as an HMAC keyed from SECRET_KEY, never in clear."""

    __tablename__ = "auth_recovery_codes"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class ApiKey(UUIDv7AuditBase):
    __tablename__ = "auth_api_keys"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("orgs.id", ondelete="SET NULL"), default=None
    )
    is_service: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # What the key may do (backend/auth/scopes.py) and, when set, the only collections it may use.
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), default=lambda: ["read", "write"], server_default="{read,write}"
    )
    collections: Mapped[list[str] | None] = mapped_column(ARRAY(String(63)), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Passkey(UUIDv7AuditBase):
    """A WebAuthn credential of a user (backend/auth/passkeys.py): the authenticator keeps the
    private key, we keep its public key (COSE) and the signature counter it last reported."""

    __tablename__ = "auth_passkeys"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # How the browser may reach the authenticator (internal, hybrid, usb…), a hint for sign-in.
    transports: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), default=list, server_default="{}"
    )
    name: Mapped[str] = mapped_column(String(100))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class EmailToken(UUIDv7AuditBase):
    """A single-use token sent by mail: verify_email, password_reset or email_change (which
    carries the address it switches the account to). Stored hashed."""

    __tablename__ = "auth_email_tokens"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    new_email: Mapped[str | None] = mapped_column(String(320), default=None)


class Identity(UUIDv7AuditBase):
    """An account at a sign-in provider (Google, GitHub, an OpenID provider) that signs in as
    a user: the provider's name in this app and its stable id for the person (``subject``),
    with the email it last gave and whether it vouched for it."""

    __tablename__ = "auth_identities"
    __table_args__ = (
        UniqueConstraint("provider", "subject", name="auth_identities_provider_subject_key"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


ORG_ROLES = ("owner", "admin", "member")


class Org(UUIDv7AuditBase):
    __tablename__ = "orgs"

    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class OrgMember(UUIDv7AuditBase):
    __tablename__ = "org_members"
    __table_args__ = (UniqueConstraint("org_id", "user_id", name="org_members_org_user_key"),)

    org_id: Mapped[UUID] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))


class OrgInvitation(UUIDv7AuditBase):
    __tablename__ = "org_invitations"

    org_id: Mapped[UUID] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    accepted_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
