"""API shapes for /orgs and /invitations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from backend.auth.schemas import Email, Token
from backend.lib.names import name_meta

OrgRole = Literal["owner", "admin", "member"]


class NewOrg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, name_meta(200)]


class OrgUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, name_meta(200)]


class OrgView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    role: OrgRole
    created_at: datetime


class MemberView(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    email: str | None  # (an anonymous user has none; the API never makes one a member)
    name: str | None
    role: OrgRole
    joined_at: datetime


class MemberUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: OrgRole


class NewInvitation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    role: OrgRole = "member"


class AcceptInvitation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: Token


class InvitationView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    org_id: UUID
    email: str
    role: OrgRole
    expires_at: datetime
    accepted_at: datetime | None
