"""What every auth service shares: the clients (``AuthCore``: the request's database session,
Redis, settings, clock, mailer, this process's session states) and the small helpers over them
(mail after the commit, the session-state cache, membership, the account's password), with the
names, keys and refusals the services have in common.

The services (one per concern: sessions, two_factor, passkeys, mailed, keys, accounts,
anonymous, identities, admin) each hold an ``AuthCore``; what one concern needs of another it
is given as a collaborator (sign_ins, revoking, email_tokens, deletion), never inherited.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from functools import partial
from uuid import UUID

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.access import SESSION_STATE_KEY, encode_state
from backend.auth.models import OrgMember, User
from backend.auth.revocations import SessionState, SessionStates
from backend.auth.schemas import UserView
from backend.auth.secrets import passwords_for
from backend.auth.standing import address_of
from backend.config import Settings
from backend.db.transactions import after_commit
from backend.errors import Conflict, Forbidden, Invalid, Unauthenticated
from backend.identity import Principal
from backend.lib.clock import Clock
from backend.mail.compose import Mail, MailKind
from backend.mail.service import Mailer

log = logging.getLogger(__name__)
GRACE_RESPONSE_KEY = "litebase:auth:refresh-grace:{}"
SIGNIN_FAILURES_KEY = "litebase:auth:signin-failures:{}"
MFA_PENDING_KEY = "litebase:auth:mfa-pending:{}"  # a first factor passed, awaiting the code
MFA_TOKEN_PREFIX = "lbm_"  # noqa: S105 - a prefix, not a secret
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)
VERIFY_EMAIL, PASSWORD_RESET, EMAIL_CHANGE = "verify_email", "password_reset", "email_change"
SIGN_IN_CODE = "sign_in_code"
SIGN_IN_CODE_DIGITS = 6


def unauthorized(detail: str, code: str) -> Unauthenticated:
    return Unauthenticated(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


def email_taken(field: str) -> Conflict:
    return Conflict(
        "An account with this email already exists",
        code="email_taken",
        errors=[{"field": field, "message": "already registered", "source": "body"}],
    )


def invalid_grant(detail: str, *, keep_changes: bool = False) -> Unauthenticated:
    return Unauthenticated(detail, code="invalid_grant", keep_changes=keep_changes)


def wrong_code() -> Invalid:
    return Invalid(
        "The code is not right, or was used already",
        errors=[{"field": "code", "message": "incorrect", "source": "body"}],
    )


def user_view(user: User) -> UserView:
    view = msgspec.convert(user, UserView, from_attributes=True)
    return msgspec.structs.replace(view, totp_enabled=user.totp_enabled_at is not None)


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def get_by_email(self, email: str) -> User | None:
        return await self.get_one_or_none(func.lower(User.email) == email.strip().lower())


class AuthCore:
    """The clients every auth service works with, over one database session, and the few
    helpers that need nothing but them."""

    def __init__(
        self,
        db: AsyncSession,
        redis: Redis,
        settings: Settings,
        clock: Clock,
        mailer: Mailer,
        states: SessionStates,
    ) -> None:
        self.db = db
        self.redis = redis
        self.states = states
        self.settings = settings
        self.clock = clock
        self.mailer = mailer
        self.users = UserService(session=db)
        self.passwords = passwords_for(settings)

    def mail(self, mail: Mail) -> None:
        """Send ``mail`` once the request's changes are committed (a token it carries is
        stored by then; a request that fails mails nothing)."""
        after_commit(self.db, partial(self.mailer.send, mail))

    def mail_user(self, user: User, kind: MailKind, **values: str | int) -> None:
        """Mail ``user`` a ``kind`` of mail, in their language, after the commit; ``values``
        are what that kind's templates need (backend/mail/compose.py: VALUES)."""
        self.mail(
            Mail(kind=kind, to=address_of(user, "be mailed"), locale=user.locale, values=values)
        )

    async def cache_session_state(self, session_id: UUID, state: SessionState) -> None:
        # Kept as long as an access token lives, so a revoked session stays refused.
        await self.redis.set(
            SESSION_STATE_KEY.format(session_id),
            encode_state(state),
            ex=self.settings.access_token_ttl_seconds,
        )

    async def require_membership(self, user_id: UUID, org_id: UUID) -> None:
        member = await self.db.scalar(
            select(OrgMember.id).where(OrgMember.user_id == user_id, OrgMember.org_id == org_id)
        )
        if member is None:
            raise Forbidden(
                "You are not a member of that org",
                code="not_a_member",
                errors=[{"field": "org_id", "message": "not a member", "source": "body"}],
            )

    async def check_password(
        self, user: User, password: str | None, detail: str, *, field: str = "password"
    ) -> None:
        """422 naming ``field`` unless ``password`` is the account's (a sensitive change)."""
        if password is None or not await asyncio.to_thread(
            self.passwords.verify, user.password_hash, password
        ):
            raise Invalid(
                detail,
                errors=[{"field": field, "message": "missing or incorrect", "source": "body"}],
            )

    async def get_user(self, principal: Principal) -> User:
        user = await self.db.get(User, principal.user_id)
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        return user
