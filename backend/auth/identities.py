"""Accounts at sign-in providers (identities): signing in with one (grant_type oauth_code),
linking one to the signed-in account, listing and unlinking them.

Who a provider's account is in Litebase, on a first sign-in:
- the identity (provider, subject) is known: its user;
- else the provider vouches for the email (email_verified) and an account has it: linked to
  that account only if the account's own address is verified; an unverified account with the
  address is whoever typed it at sign-up, maybe not its owner (pre-hijacking), so nothing is
  merged and the sign-in is refused (409);
- else, with a vouched-for email and no account: a new account, its email verified;
- a provider that does not vouch for the email signs nobody in the first time (403): sign in
  another way and link it from the account, which needs no email at all.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.auth.core import AuthCore, invalid_grant
from backend.auth.models import AuthSession, Identity, User
from backend.auth.oauth_flow import OAuthGrant, pkce_matches, take_grant
from backend.auth.schemas import IdentityView, TokenResponse
from backend.auth.sign_ins import SignIns
from backend.auth.standing import became_permanent, ways_to_sign_in
from backend.errors import Conflict, Forbidden, NotFound, Unauthenticated
from backend.identity import ClientInfo, Principal
from backend.mail.compose import MailKind, mail_time
from backend.paging import Page, Paging, by_offset, page_by_offset


class Identities:
    """Sign-in with a provider's one-time code; my linked provider accounts."""

    def __init__(self, core: AuthCore, sign_ins: SignIns) -> None:
        self.core = core
        self.sign_ins = sign_ins

    @classmethod
    def over(cls, core: AuthCore) -> Identities:
        """The service over ``core``, with its collaborator made over it too."""
        return cls(core, SignIns(core))

    async def sign_in_with_oauth_code(
        self, code: str, code_verifier: str, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        """Exchange the one-time code the callback sent the app, with the app's PKCE verifier:
        tokens for the account the provider's person is (made or linked on first sign-in), or
        for a link the new session of the account that asked."""
        grant = await take_grant(self.core.redis, code)
        # A wrong verifier spends the code too: whoever holds a stolen code gets one try.
        if grant is None or not pkce_matches(grant.code_challenge, code_verifier):
            raise invalid_grant(
                "The code is not valid, was used already or has expired, or the code_verifier"
                " does not match the code_challenge it was asked with"
            )
        if grant.link_user is not None:
            user = await self._link(grant)
            return await self.sign_ins.open_session(user, org_id, client)
        user = await self._user_of(grant)
        if user.disabled:
            raise Forbidden("This account is disabled", code="account_disabled")
        if self.core.settings.auth_require_verified_email and not user.email_verified:
            raise Forbidden(
                "Verify your email address before signing in", code="email_not_verified"
            )
        try:
            return await self.sign_ins.after_first_factor(user, org_id, client)
        except Unauthenticated as exc:
            if exc.code == "mfa_required":  # the link stands; the session waits for the code
                exc.keep_changes = True
            raise

    async def _user_of(self, grant: OAuthGrant) -> User:
        """The account this provider's person signs in to (see the module's docstring)."""
        known = await self._identity(grant.provider, grant.profile.subject)
        if known is not None:
            self._remember_email(known, grant)
            user = await self.core.db.get(User, known.user_id)
            assert user is not None  # identities go with their user (cascade)
            return user
        profile, provider = grant.profile, grant.provider
        if not profile.email:
            raise Forbidden(
                f"{provider} did not share an email address: allow it to, or sign in another"
                f" way and link {provider} from your account",
                code="provider_email_missing",
            )
        if not profile.email_verified:
            raise Forbidden(
                f"{provider} has not verified this email address: verify it there, or sign in"
                f" another way and link {provider} from your account",
                code="provider_email_unverified",
            )
        user = await self.core.users.get_by_email(profile.email)
        if user is None:
            user = await self._new_user_from(profile.email, profile.name)
        elif not user.email_verified:
            raise Conflict(
                "An account with this email exists but its address was never verified, so it"
                f" cannot be joined to your {provider} account. Verify the account's email (or"
                f" reset its password), then sign in with {provider} again",
                code="account_not_verified",
            )
        else:
            self._tell_linked(user, provider)
        return await self._add_identity(user, grant)

    async def _link(self, grant: OAuthGrant) -> User:
        """Add the provider's account to the account whose session asked for the link (any
        signed-in session: the account keeps its id, its records and its other ways in)."""
        session = await self.core.db.get(AuthSession, grant.link_session)
        if (
            session is None
            or session.user_id != grant.link_user
            or session.revoked_at is not None
            or session.expires_at <= self.core.clock.now()
        ):
            raise invalid_grant("The session that asked for the link has ended; sign in again")
        user = await self.core.db.get(User, grant.link_user)
        if user is None or user.disabled:
            raise invalid_grant("The account that asked for the link is gone or disabled")
        known = await self._identity(grant.provider, grant.profile.subject)
        if known is not None and known.user_id != user.id:
            raise Conflict(
                f"This {grant.provider} account already signs in to another account: unlink"
                " it there first",
                code="identity_taken",
            )
        if known is not None:
            self._remember_email(known, grant)
            return user
        became_permanent(user)  # a guest with a provider account has a way back in of its own
        self._tell_linked(user, grant.provider)
        return await self._add_identity(user, grant)

    async def _identity(self, provider: str, subject: str) -> Identity | None:
        found: Identity | None = await self.core.db.scalar(
            select(Identity).where(Identity.provider == provider, Identity.subject == subject)
        )
        return found

    @staticmethod
    def _remember_email(identity: Identity, grant: OAuthGrant) -> None:
        identity.email = grant.profile.email
        identity.email_verified = grant.profile.email_verified

    async def _new_user_from(self, email: str, name: str | None) -> User:
        user = User(email=email, name=(name or "")[:200] or None, email_verified=True)
        try:
            async with self.core.db.begin_nested():
                self.core.db.add(user)
        except IntegrityError:  # the same address signed up at this moment: that account
            found = await self.core.users.get_by_email(email)
            if found is None or not found.email_verified:
                raise Conflict(
                    "An account with this email was just made another way; try again",
                    code="account_not_verified",
                ) from None
            return found
        return user

    async def _add_identity(self, user: User, grant: OAuthGrant) -> User:
        identity = Identity(
            user_id=user.id,
            provider=grant.provider,
            subject=grant.profile.subject,
            email=grant.profile.email,
            email_verified=grant.profile.email_verified,
        )
        try:
            async with self.core.db.begin_nested():
                self.core.db.add(identity)
        except IntegrityError:  # a concurrent first sign-in of the same person made it
            raced = await self._identity(grant.provider, grant.profile.subject)
            if raced is None or raced.user_id != user.id:
                raise Conflict(
                    f"This {grant.provider} account was just linked elsewhere; try again",
                    code="identity_taken",
                ) from None
        return user

    def _tell_linked(self, user: User, provider: str) -> None:
        """A provider account can now sign in to this account: its owner hears of it."""
        if user.email_verified:
            self.core.mail_user(
                user,
                MailKind.IDENTITY_LINKED,
                provider=provider,
                when=mail_time(self.core.clock.now()),
            )

    async def list_identities(self, principal: Principal, paging: Paging) -> Page[IdentityView]:
        identities = await self.core.db.scalars(
            by_offset(
                select(Identity)
                .where(Identity.user_id == principal.user_id)
                .order_by(Identity.created_at, Identity.id),
                paging,
            )
        )
        return page_by_offset(identities.all(), paging).map(
            lambda identity: msgspec.convert(identity, IdentityView, from_attributes=True)
        )

    async def unlink_identity(self, principal: Principal, identity_id: UUID) -> None:
        """Unlink one of my provider accounts, unless it is my last way to sign in (409)."""
        if principal.session_id is None:
            raise Forbidden(
                "Unlinking a sign-in provider needs a signed-in session, not an API key",
                code="session_required",
            )
        # The account's row lock makes two unlinks at once count one after the other.
        user = await self.core.db.scalar(
            select(User).where(User.id == principal.user_id).with_for_update()
        )
        identity = await self.core.db.get(Identity, identity_id)
        if user is None or identity is None or identity.user_id != user.id:
            raise NotFound("No such linked account", code="not_found")
        if await ways_to_sign_in(self.core.db, user) <= 1:
            raise Conflict(
                "This is the account's last way to sign in: set a password or link another"
                " provider before unlinking it",
                code="last_sign_in_method",
            )
        await self.core.db.delete(identity)
        await self.core.db.flush()
