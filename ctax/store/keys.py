"""API keys: random, shown once, stored as SHA-256 (keys are high-entropy, so a slow hash adds nothing)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ctax.enums import Role
from ctax.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ctax.store.models import ApiKey
from ctax.store.types import utcnow

# last_used_at is a hint for admins, not an audit: written at most this often, so reads stay reads.
TOUCH_EVERY = dt.timedelta(minutes=5)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def by_hash(session: Session, digest: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))


def create_key(session: Session, name: str, role: str, value: str | None = None) -> tuple[ApiKey, str]:
    if role not in list(Role):
        raise InvalidInput(f"role must be one of {', '.join(Role)}, got {role!r}", field="role")
    if not name or not name.strip() or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters", field="name")
    key = value or f"ctax_{secrets.token_urlsafe(32)}"
    if len(key) < 16:
        raise InvalidInput("an API key must be at least 16 characters", field="key")
    digest = hash_key(key)
    if by_hash(session, digest) is not None:
        raise Conflict("that key already exists")
    row = ApiKey(name=name.strip(), role=Role(role), key_hash=digest, prefix=key[:9])
    session.add(row)
    session.flush()
    return row, key


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
    return row


def require(key: ApiKey, role: Role) -> None:
    if Role(key.role).rank < role.rank:
        raise Forbidden(f"this action needs the {role} role; your key {key.name!r} has {key.role}")


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
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
