"""Writes on accounts and relationships, one module per idea. Each service is atomic, takes the acting
user, checks what it needs through the access policy and writes its own audit rows.
``from portal import services`` reaches every service by name."""

from portal.services.care_teams import care_team_add, care_team_end
from portal.services.children import child_create, user_language_set
from portal.services.invitations import (
    CODE_ALPHABET,
    CODE_LENGTH,
    invitation_create,
    invitation_create_for_system,
    invitation_redeem,
)
from portal.services.links import (
    LinkBreach,
    link_approve,
    link_breaches,
    link_revoke,
    link_suspend_for_approval,
    link_update,
    links_expire,
)
from portal.services.phones import phone_set, phone_verification_confirm, phone_verification_start
from portal.services.user_sessions import SessionView, user_sessions_end, user_sessions_list

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "LinkBreach",
    "SessionView",
    "care_team_add",
    "care_team_end",
    "child_create",
    "invitation_create",
    "invitation_create_for_system",
    "invitation_redeem",
    "link_approve",
    "link_breaches",
    "link_revoke",
    "link_suspend_for_approval",
    "link_update",
    "links_expire",
    "phone_set",
    "phone_verification_confirm",
    "phone_verification_start",
    "user_language_set",
    "user_sessions_end",
    "user_sessions_list",
]
