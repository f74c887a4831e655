"""Vouchers: codes issued for a commercial reference and a quantity, each redeemed once into a locker."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.locker import journal, tables, voucher_codes
from engine.locker.db import Store
from engine.locker.lockers import balances_of, emails_of, family, locker_row, record_audit
from engine.locker.tables import utcnow
from engine.locker.users import user_row
from engine.problem import refusal

REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
MAX_VOUCHERS_PER_ISSUE = 10_000
# Units one voucher holds: a balance summed over many such vouchers must stay a 64-bit database integer.
MAX_VOUCHER_QUANTITY = 1_000_000


def _reference(reference: str) -> str:
    text = str(reference or "").strip()
    if not REFERENCE_PATTERN.match(text):
        raise refusal("bad-reference", f"'{reference}' is not a commercial reference",
                      "references are letters, digits and . _ / - (at most 64)")
    return text


def _positive(value, name: str, code: str, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (upper and value > upper):
        limit = f" and at most {upper}" if upper else ""
        raise refusal(code, f"{name} must be a whole number of at least 1{limit}, got {value!r}")
    return value


def issue_vouchers(store: Store, reference: str, quantity: int, count: int = 1, actor: str | None = None) -> list[str]:
    """Create COUNT new voucher codes, each for QUANTITY of REFERENCE (the vendor's order fulfilment)."""
    reference = _reference(reference)
    quantity = _positive(quantity, "quantity", "bad-quantity", MAX_VOUCHER_QUANTITY)
    count = _positive(count, "count", "bad-count", MAX_VOUCHERS_PER_ISSUE)
    now = utcnow()
    issued = [voucher_codes.new_voucher_code() for _ in range(count)]
    with store.transaction() as session:
        session.add_all(tables.Voucher(code=code.replace("-", ""), reference=reference, quantity=quantity,
                                       issued_at=now) for code in issued)
        # The codes are bearer secrets: the journal keeps only their last group, enough to trace one.
        journal.record(session, actor, "vouchers-issued", reference,
                       {"quantity": quantity, "count": count, "codes": [f"...{code[-5:]}" for code in issued]})
    return issued


@dataclass(frozen=True)
class Redemption:
    """A voucher credited to a locker."""

    code: str
    reference: str
    quantity: int
    locker_id: int
    at: datetime
    balance: int

    def to_json(self) -> dict:
        """Return the redemption as a JSON-ready dict."""
        return {**asdict(self), "at": self.at.isoformat()}


def redeem(store: Store, user_email: str, code: str) -> Redemption:
    """Credit the voucher CODE to the acting user's locker; a code redeems once."""
    symbols = voucher_codes.normalize_voucher_code(code)
    shown = voucher_codes.format_voucher_code(symbols)
    try:
        with store.transaction() as session:
            user = user_row(session, user_email, lock=True)
            voucher = session.scalar(select(tables.Voucher).where(tables.Voucher.code == symbols))
            if voucher is None:
                raise refusal("unknown-code", f"voucher {shown} does not exist",
                              "the code is well formed but was never issued; check your order confirmation")
            locker = locker_row(session, user, lock=True)
            earlier = session.get(tables.Redemption, voucher.id)
            if earlier is not None:
                raise _already_redeemed(session, shown, earlier, locker)
            before = balances_of(session, locker.id)
            now = utcnow()
            session.add(tables.Redemption(voucher_id=voucher.id, locker_id=locker.id, user_id=user.id, at=now))
            session.add(tables.LedgerEntry(locker_id=locker.id, reference=voucher.reference,
                                           quantity=voucher.quantity, kind="redemption", voucher_id=voucher.id,
                                           at=now, by_user_id=user.id))
            session.flush()
            after = dict(before)
            after[voucher.reference] = after.get(voucher.reference, 0) + voucher.quantity
            record_audit(session, locker.id, user, "redemption",
                         {"code": shown, "reference": voucher.reference, "quantity": voucher.quantity,
                          "before": before, "after": after})
            return Redemption(code=shown, reference=voucher.reference, quantity=voucher.quantity,
                              locker_id=locker.id, at=now, balance=after[voucher.reference])
    except IntegrityError:  # another transaction redeemed it first
        raise refusal("already-redeemed", f"voucher {shown} has already been redeemed",
                      "a voucher code can be redeemed only once") from None


def _already_redeemed(session: Session, shown: str, earlier: tables.Redemption, locker: tables.Locker):
    if earlier.locker_id in family(session, locker.id):
        by = emails_of(session, [earlier.user_id]).get(earlier.user_id, "?")
        return refusal("already-redeemed",
                       f"voucher {shown} was already redeemed into your locker {locker.id} "
                       f"on {earlier.at:%Y-%m-%d %H:%M} UTC by {by}",
                       "its quantity is already in your balance: companion locker show")
    return refusal("already-redeemed", f"voucher {shown} has already been redeemed",
                   "a voucher code can be redeemed only once; contact whoever gave you the code")
