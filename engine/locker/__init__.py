"""The Digital Locker: users, lockers, vouchers, activations, sharing and audit, as `locker.NAME`."""

from engine.locker.activations import (
    Activation,
    Shortfall,
    activate,
    get_activation,
    get_activation_to_change,
    list_activations,
)
from engine.locker.audit_trail import AuditEvent, audit
from engine.locker.lockers import LockerView, balances, show_locker
from engine.locker.sharing import Acceptance, Invitation, accept, invite, pending_invitations
from engine.locker.users import User, add_user, get_user, list_users, normalize_email, set_user
from engine.locker.vouchers import MAX_VOUCHER_QUANTITY, MAX_VOUCHERS_PER_ISSUE, Redemption, issue_vouchers, redeem

__all__ = [
    "MAX_VOUCHERS_PER_ISSUE",
    "MAX_VOUCHER_QUANTITY",
    "Acceptance",
    "Activation",
    "AuditEvent",
    "Invitation",
    "LockerView",
    "Redemption",
    "Shortfall",
    "User",
    "accept",
    "activate",
    "add_user",
    "audit",
    "balances",
    "get_activation",
    "get_activation_to_change",
    "get_user",
    "invite",
    "issue_vouchers",
    "list_activations",
    "list_users",
    "normalize_email",
    "pending_invitations",
    "redeem",
    "set_user",
    "show_locker",
]
