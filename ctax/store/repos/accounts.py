"""Accounts: the advertisers and partners that poster keys, and the creatives they send, belong to."""

from __future__ import annotations

from sqlalchemy import ScalarSelect, Select, func, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import Session

from ctax.enums import AccountKind, AccountStatus
from ctax.store.models import Account, Annotation, ApiKey, Creative


def get(session: Session, account_id: int) -> Account | None:
    return session.get(Account, account_id)


def by_name(session: Session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


def add(session: Session, name: str, kind: AccountKind) -> Account:
    account = Account(name=name, kind=kind)
    session.add(account)
    session.flush()
    return account


def all_accounts(session: Session, status: AccountStatus | None = None) -> list[Account]:
    query = select(Account).order_by(Account.id)
    if status == AccountStatus.ACTIVE:
        query = query.where(Account.suspended_at.is_(None))
    elif status == AccountStatus.SUSPENDED:
        query = query.where(Account.suspended_at.is_not(None), Account.erasing_at.is_(None))
    elif status == AccountStatus.ERASING:
        query = query.where(Account.erasing_at.is_not(None))
    return list(session.scalars(query))


def creative_ids(session: Session, account_id: int, limit: int) -> list[str]:
    return list(session.scalars(select(Creative.id).where(Creative.account_id == account_id)
                                .order_by(Creative.created_at).limit(limit)))


def delete(session: Session, account_id: int) -> None:
    """The account and its keys, once it holds no creative. An annotation its poster key made on a creative of
    another account (none is made so today) keeps its label and loses its author."""
    keys = select(ApiKey.id).where(ApiKey.account_id == account_id).scalar_subquery()
    session.execute(update(Annotation).where(Annotation.created_by.in_(keys)).values(created_by=None))
    session.execute(sa_delete(ApiKey).where(ApiKey.account_id == account_id))
    session.execute(sa_delete(Account).where(Account.id == account_id))


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


def take_places(session: Session, account_id: int, n: int, quota: int) -> bool:
    """Count `n` more creatives held by the account (the transaction inserts them next), unless its `quota` would
    be passed: then the count is left as it is, and False.

    The count is kept only while a quota applies (NULL otherwise, and after every change of quota): keeping it
    costs a post the lock of the account's row until it commits, so on PostgreSQL one account's posts commit one
    after another (bench.quotas), a price only an account with a quota pays. The first post under a quota counts
    what the account holds; each later one is one conditional UPDATE of the row, whose lock makes racing posts
    judge the count the one before committed, so they never pass the quota (a count of the account's creatives per
    post instead cost 13-20% of posts a second at a few thousand held, and more as it holds more)."""
    for _ in range(3):
        if _raise_held(session, account_id, n, quota):
            return True
        held = session.scalar(select(Account.creatives_held).where(Account.id == account_id))
        if held is not None and held + n > quota:
            return False
        if held is None:
            # The first post under this quota: count what the account holds, then judge again. A post racing it
            # waits on the row this locks and finds the count there.
            session.execute(update(Account).where(Account.id == account_id, Account.creatives_held.is_(None))
                            .values(creatives_held=_holds(account_id).scalar_subquery()))
        # Else the count was taken by a racing post after the UPDATE above looked (on PostgreSQL it saw none, and
        # this read sees the other's commit): judge again on it, rather than refuse a post there is room for.
    return False


def _raise_held(session: Session, account_id: int, n: int, quota: int) -> bool:
    taken = session.execute(update(Account).where(Account.id == account_id, Account.creatives_held + n <= quota)
                            .values(creatives_held=Account.creatives_held + n))
    return bool(getattr(taken, "rowcount", 0))


def free_places(session: Session, account_id: int, n: int = 1) -> None:
    session.execute(update(Account).where(Account.id == account_id, Account.creatives_held.is_not(None))
                    .values(creatives_held=Account.creatives_held - n))


def kept_count(session: Session, account_id: int) -> int | None:
    """The count of what the account holds that its quota keeps (None: none kept, see take_places)."""
    kept = session.scalar(select(Account.creatives_held).where(Account.id == account_id))
    return None if kept is None else int(kept)


def held(session: Session, account_id: int) -> int:
    """What the account holds: its kept count, or a count of its creatives where none is kept."""
    if (kept := kept_count(session, account_id)) is not None:
        return kept
    return int(session.scalar(_holds(account_id)) or 0)


def recount(session: Session, account_id: int) -> tuple[int | None, int]:
    """Set the account's kept count (where a quota keeps one) to what it holds; returns (kept, counted). The row's
    lock, taken first, waits for posts that raised the count and have not committed, and holds off new ones, so the
    count read under it is the one their commits leave."""
    kept = session.scalar(select(Account.creatives_held).where(Account.id == account_id).with_for_update())
    counted = int(session.scalar(_holds(account_id)) or 0)
    if kept is not None and kept != counted:
        session.execute(update(Account).where(Account.id == account_id).values(creatives_held=counted))
    return kept, counted


def _holds(account_id: int) -> Select[int]:
    """What a quota counts: every creative the account holds, whatever its status."""
    return select(func.count()).select_from(Creative).where(Creative.account_id == account_id)
