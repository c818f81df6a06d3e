"""Accounts: the advertisers and partners that poster keys, and the creatives they send, belong to."""

from __future__ import annotations

from sqlalchemy import ScalarSelect, select
from sqlalchemy.orm import Session

from ctax.enums import AccountKind
from ctax.store.models import Account, ApiKey


def get(session: Session, account_id: int) -> Account | None:
    return session.get(Account, account_id)


def by_name(session: Session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


def add(session: Session, name: str, kind: AccountKind) -> Account:
    account = Account(name=name, kind=kind)
    session.add(account)
    session.flush()
    return account


def all_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.id)))


def of_key(api_key_id: int | None) -> ScalarSelect[int | None] | None:
    """The key's account as a subquery, for a lookup to evaluate in its own statement."""
    if api_key_id is None:
        return None
    return select(ApiKey.account_id).where(ApiKey.id == api_key_id).scalar_subquery()
