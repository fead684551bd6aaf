"""Orgs: orgs, their members and invitations."""

from __future__ import annotations

from backend.capability import Capability
from backend.orgs.routes import InvitationController, OrgController


def orgs_capability() -> Capability:
    return Capability("orgs", routes=[OrgController, InvitationController])
