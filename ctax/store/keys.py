"""API keys: random, shown once, stored as SHA-256 (keys are high-entropy, so a slow hash adds nothing); and the
accounts poster keys belong to, which bound what a poster sees."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import unicodedata
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from ctax.enums import AccountKind, AccountStatus, Role
from ctax.errors import AccountSuspended, Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ctax.jobs import ERASE_ACCOUNT
from ctax.store import outbox
from ctax.store.models import Account, ApiKey
from ctax.store.repos import accounts
from ctax.store.types import utcnow

# last_used_at is a hint for admins, not an audit: written at most this often, so reads stay reads.
TOUCH_EVERY = dt.timedelta(minutes=5)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def by_hash(session: Session, digest: str) -> ApiKey | None:
    """The key with its account (loaded with it: the key is cached and read after its session ends)."""
    return session.scalar(select(ApiKey).options(joinedload(ApiKey.account)).where(ApiKey.key_hash == digest))


def create_key(
    session: Session, name: str, role: str, value: str | None = None, account_id: int | None = None
) -> tuple[ApiKey, str]:
    """A poster key needs the account it posts for; reviewer and admin keys see every account and have none."""
    if role not in list(Role):
        raise InvalidInput(f"role must be one of {', '.join(Role)}, got {role!r}", field="role")
    name = clean_name(name)
    if role == Role.POSTER and account_id is None:
        raise InvalidInput("a poster key belongs to an account: give account_id (--account on the command line); "
                           "create the account first", field="account_id")
    if role != Role.POSTER and account_id is not None:
        raise InvalidInput(f"only poster keys belong to an account; a {role} key sees every account",
                           field="account_id")
    status = account_status(known_account(session, account_id)) if account_id is not None else AccountStatus.ACTIVE
    if status != AccountStatus.ACTIVE:
        why = "is being erased" if status == AccountStatus.ERASING else "is suspended: resume it before making keys"
        raise Conflict(f"account {account_id} {why}; no key is made for it", field="account_id")
    key = value or f"ctax_{secrets.token_urlsafe(32)}"
    if len(key) < 16:
        raise InvalidInput("an API key must be at least 16 characters", field="key")
    digest = hash_key(key)
    if by_hash(session, digest) is not None:
        raise Conflict("that key already exists")
    row = ApiKey(name=name, role=Role(role), key_hash=digest, prefix=key[:9], account_id=account_id)
    session.add(row)
    session.flush()
    return row, key


def clean_name(name: str) -> str:
    """A key's or an account's name: 1 to 200 characters once trimmed, none of them a control character (PostgreSQL
    refuses NUL in text, and names are shown on the review page and in logs)."""
    name = name.strip() if name else ""
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters", field="name")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("name must not contain control characters", field="name")
    return name


def ensure_key(session: Session, name: str, role: Role, value: str) -> ApiKey:
    """Idempotent: the bootstrap admin key is created on the first start and found on every later one."""
    row = by_hash(session, hash_key(value))
    if row is not None:
        if row.revoked_at is not None:
            raise Conflict("the bootstrap admin key was revoked; choose another CTAX_BOOTSTRAP_ADMIN_KEY")
        return row
    return create_key(session, name, role, value)[0]


def authenticate(session: Session, presented: str | None) -> ApiKey:
    if not presented:
        raise Unauthorized("missing API key: send it in the X-API-Key header")
    digest = hash_key(presented)
    row = by_hash(session, digest)
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("invalid or revoked API key")
    if row.account is not None and row.account.suspended_at is not None:
        if row.account.erasing_at is not None:
            raise AccountSuspended(f"the account {row.account.name!r} this key posts for is being erased")
        raise AccountSuspended(f"the account {row.account.name!r} this key posts for is suspended; an admin can "
                               "resume it")
    return row


def require(key: ApiKey, role: Role) -> None:
    if Role(key.role).rank < role.rank:
        raise Forbidden(f"this action needs the {role} role; your key {key.name!r} has {key.role}")
    if key.role == Role.POSTER and key.account_id is None:
        # A poster sees its account's creatives only; without one, nothing could bound what it sees.
        raise Forbidden(f"the poster key {key.name!r} belongs to no account; an admin must make a key for one")


def revoke(session: Session, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def needs_touch(key: ApiKey) -> bool:
    return key.last_used_at is None or utcnow() - key.last_used_at > TOUCH_EVERY


def touch(session: Session, key_id: int) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).options(selectinload(ApiKey.account)).order_by(ApiKey.id)))


# -- accounts --------------------------------------------------------------------------------------------------


def create_account(session: Session, name: str, kind: str) -> Account:
    if kind not in list(AccountKind):
        raise InvalidInput(f"kind must be one of {', '.join(AccountKind)}, got {kind!r}", field="kind")
    name = clean_name(name)
    if accounts.by_name(session, name) is not None:
        raise Conflict(f"an account named {name!r} already exists", field="name")
    return accounts.add(session, name, AccountKind(kind))


def list_accounts(session: Session, status: AccountStatus | None = None) -> list[Account]:
    return accounts.all_accounts(session, status)


def account_status(account: Account) -> AccountStatus:
    if account.erasing_at is not None:
        return AccountStatus.ERASING
    return AccountStatus.ACTIVE if account.suspended_at is None else AccountStatus.SUSPENDED


def start_erasure(session: Session, account_id: int) -> Account:
    """Suspend the account for good and have a worker erase it (creatives/erasure.py). Asking again while it is
    being erased queues another step, which picks up an erasure whose worker was lost."""
    account = get_account(session, account_id)
    now = utcnow()
    account.suspended_at = account.suspended_at or now
    account.erasing_at = account.erasing_at or now
    outbox.enqueue(session, ERASE_ACCOUNT, account_id, 0.0)
    session.flush()
    return account


def get_account(session: Session, account_id: int) -> Account:
    account = accounts.get(session, account_id)
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def update_account(session: Session, account_id: int, name: str | None = None,
                   status: AccountStatus | None = None, rate_limits: dict[str, str | None] | None = None,
                   quotas: dict[str, int | str | None] | None = None) -> Account:
    """Rename, suspend or resume, or set its own rate limits and quotas. Suspending refuses the account's poster
    keys (403) until it is resumed, which makes the same keys work again; its creatives stay, and those already
    sent are still labelled. A rate limit or quota set to None follows the service's setting again."""
    account = get_account(session, account_id)
    if account.erasing_at is not None:
        raise Conflict(f"account {account_id} is being erased: it changes no more", field="account_id")
    if status == AccountStatus.ERASING:
        raise InvalidInput("status: an account is erased with DELETE /v1/accounts/{id} (ctax accounts erase ID), "
                           "not by setting its status", field="status")
    if rate_limits:
        account.rate_limits = _own(account.rate_limits, rate_limits)
    if quotas:
        account.quotas = _own(account.quotas, quotas)
        account.creatives_held = None  # counted afresh by the first post under the new quota (repos/accounts.py)
    if name is not None and (name := clean_name(name)) != account.name:
        if accounts.by_name(session, name) is not None:
            raise Conflict(f"an account named {name!r} already exists", field="name")
        account.name = name
    if status == AccountStatus.SUSPENDED and account.suspended_at is None:
        account.suspended_at = utcnow()
    elif status == AccountStatus.ACTIVE:
        account.suspended_at = None
    session.flush()
    return account


def _own(current: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any] | None:
    """An account's own values after `changes` (None: the service's again, so not stored)."""
    merged = {**(current or {}), **changes}
    return {kind: value for kind, value in merged.items() if value is not None} or None


def account_usage(session: Session, account: Account) -> dict[str, dict[str, int]]:
    """What an account holds: its poster keys (active, revoked) and its creatives by status."""
    return accounts.usage(session, account.id)


def recount_held(session: Session, account_id: int) -> tuple[str, int | None, int]:
    """Correct what the account's quota counts it holds (a creative written other than through the API, by hand or
    by a restore, is not counted): its name, the count kept before (None: no quota keeps one) and what it holds."""
    name = get_account(session, account_id).name
    return (name, *accounts.recount(session, account_id))


def known_account(session: Session, account_id: int, field: str = "account_id") -> Account:
    """The account, or a 422 naming the field that gave an unknown id."""
    account = accounts.get(session, account_id)
    if account is None:
        raise InvalidInput(f"{field}: no account {account_id}", field=field)
    return account


def account_scope(session: Session, key: ApiKey, requested: int | None = None) -> int | None:
    """The account whose creatives `key` may see: a poster's own, always; for reviewers and admins the one they
    ask for (checked), or None for all of them."""
    if key.role == Role.POSTER:
        if requested is not None and requested != key.account_id:
            raise Forbidden("a poster key sees its own account's creatives only", field="account_id")
        return key.account_id
    if requested is not None:
        known_account(session, requested)
    return requested
