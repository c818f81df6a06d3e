"""Accounts: the advertisers and partners that poster keys, and the creatives they send, belong to."""

from __future__ import annotations

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.orm import Session

from ctax.enums import AccountKind
from ctax.store.models import Account, ApiKey, Creative


def get(session: Session, account_id: int) -> Account | None:
    return session.get(Account, account_id)


def by_name(session: Session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


def add(session: Session, name: str, kind: AccountKind) -> Account:
    account = Account(name=name, kind=kind)
    session.add(account)
    session.flush()
    return account


def all_accounts(session: Session, suspended: bool | None = None) -> list[Account]:
    query = select(Account).order_by(Account.id)
    if suspended is not None:
        query = query.where(Account.suspended_at.is_not(None) if suspended else Account.suspended_at.is_(None))
    return list(session.scalars(query))


def of_key(api_key_id: int | None) -> ScalarSelect[int | None] | None:
    """The key's account as a subquery, for a lookup to evaluate in its own statement."""
    if api_key_id is None:
        return None
    return select(ApiKey.account_id).where(ApiKey.id == api_key_id).scalar_subquery()


def usage(session: Session, account_id: int) -> dict[str, dict[str, int]]:
    """Its poster keys (active, revoked) and its creatives by status, in two grouped counts."""
    revoked = ApiKey.revoked_at.is_not(None)
    keys = dict(session.execute(select(revoked, func.count()).where(ApiKey.account_id == account_id)
                                .group_by(revoked)).tuples().all())
    creatives = dict(session.execute(select(Creative.status, func.count()).where(Creative.account_id == account_id)
                                     .group_by(Creative.status)).tuples().all())
    return {"keys": {"active": keys.get(False, 0), "revoked": keys.get(True, 0)},
            "creatives": {"total": sum(creatives.values()), **{str(k): v for k, v in sorted(creatives.items())}}}
