"""Checks of settings values that take more than a line (config.py's validators call them)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from string import Formatter
from typing import Any

from limits import parse_many
from pydantic import ValidationInfo


def database_url(value: str | None, backends: Sequence[str]) -> str | None:
    if value is None:
        return None
    # Read by hand, not with sqlalchemy.engine.make_url: only ctax.store may import SQLAlchemy.
    scheme, separator, _ = value.partition("://")
    backend = scheme.split("+", 1)[0].lower()
    if not separator or not backend:
        raise ValueError("is not a database URL (dialect[+driver]://user@host/db, or sqlite:///path)")
    if backend not in backends:
        raise ValueError(f"must be a {' or '.join(backends)} URL, got {backend}")
    return value


def min_length(value: str | None, chars: int) -> str | None:
    if value is not None and len(value) < chars:
        raise ValueError(f"must be at least {chars} characters (it has {len(value)})")
    return value


def qdrant_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL (unset it for local mode)")
    return value


def label_template(value: str, placeholders: Sequence[str]) -> str:
    try:
        fields = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"is not a format string ({exc})") from None
    unknown = sorted(fields - set(placeholders))
    if unknown or not fields:
        allowed = ", ".join("{" + name + "}" for name in placeholders)
        raise ValueError(f"must use only the placeholders {allowed}, at least one"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return value


def lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def on_off(value: object) -> object:
    """A switch that was a boolean before it had `auto` (CTAX_LABEL_PIPELINE): true / false, and their other
    spellings in an environment, keep their meaning as on / off; anything else is left for the field to judge."""
    spelled = str(value).strip().lower()
    return {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(spelled, value)


def misspelt_variables(names: Iterable[str], settings: Iterable[str], prefix: str) -> list[str]:
    """A warning for each variable that carries the settings' prefix and nearly names a setting but does not: a typo,
    which pydantic-settings ignores without a word (`CTAX_DATABSE_URL` left a production service on SQLite). Names
    far from every setting are left alone: other tools' variables share the prefix (the test suite's among them)."""
    known = [prefix.upper() + name.upper() for name in settings]
    warnings = []
    for name in sorted(set(names)):
        spelled = name.upper()
        if not spelled.startswith(prefix.upper()) or spelled in known:
            continue
        # 0.8: every one-letter slip and dropped suffix of a setting's name here, and none of the other variables
        # this project's tools read (CTAX_TEST_REDIS_URL, CTAX_SHARED_DATA, CTAX_PYTHON).
        close = difflib.get_close_matches(spelled, known, n=1, cutoff=0.8)
        if close:
            warnings.append(f"{name} is not a setting and is ignored: did you mean {close[0]}?")
    return warnings


def rate_limit(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_many(value)
    except ValueError:
        raise ValueError("is not a rate limit: write it as amount/period, e.g. 6000/minute or '100/second; "
                         "6000/minute' (period: second, minute, hour or day), or none for no limit") from None
    return value


def rate_limit_storage(value: str | None) -> str | None:
    if value is not None and not value.startswith(("memory://", "redis://", "rediss://")):
        raise ValueError("must be memory:// or a redis:// (rediss://) URL")
    return value


def account_rate_limit(value: str | None) -> str | None:
    """An account's own limit as an admin gives it: a limit, "none" (no limit), or "default" / None (the
    service's, which is what None stores)."""
    spelled = value.strip().lower() if value is not None else "default"
    if spelled in ("default", "none"):
        return None if spelled == "default" else "none"
    return rate_limit(spelled)


def renewed_within_lease(value: float, info: ValidationInfo) -> float:
    # Claims are renewed on each beat: a lease shorter than a few beats would expire under a live worker.
    lease = _other(info, "lease_s")
    if lease is not None and value * 3 > lease:
        raise ValueError(f"must be at most a third of CTAX_LEASE_S ({lease:g} s)")
    return value


def young_spans_an_interval(value: int, info: ValidationInfo) -> int:
    every = _other(info, "novelty_sweep_every")
    if value and every and value < every:
        raise ValueError(f"must be 0 (the whole window) or at least CTAX_NOVELTY_SWEEP_EVERY ({every}): fewer "
                         "would leave some creatives never swept")
    return value


def stale_after_beats(value: float, info: ValidationInfo) -> float:
    # A worker beats every worker_heartbeat_s: any shorter staleness would call live workers dead.
    beat = _other(info, "worker_heartbeat_s")
    if beat is not None and value <= beat:
        raise ValueError(f"must be more than CTAX_WORKER_HEARTBEAT_S ({beat:g} s)")
    return value


def _other(info: ValidationInfo, name: str) -> Any:
    """Another field's value, when it was valid and declared before this one."""
    return info.data.get(name)


def account_quota(value: int | str | None) -> int | str | None:
    """An account's own quota as an admin gives it: a number of at least 1, "none" (no quota), or "default" / None
    (the service's, which is what None stores)."""
    spelled = value.strip().lower() if isinstance(value, str) else value
    if spelled is None or spelled == "default":
        return None
    if spelled == "none":
        return "none"
    if isinstance(spelled, str) and spelled.isdigit():
        spelled = int(spelled)
    if isinstance(spelled, bool) or not isinstance(spelled, int) or spelled < 1:
        raise ValueError("is not a quota: give a whole number of at least 1, none (no quota) or default (the "
                         "service's, CTAX_QUOTA_CREATIVES)")
    return spelled
