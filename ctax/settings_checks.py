"""Checks of settings values that take more than a line (config.py's validators call them)."""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter


def database_url(value: str, backends: Sequence[str]) -> str:
    # Read by hand, not with sqlalchemy.engine.make_url: only ctax.store may import SQLAlchemy.
    scheme, separator, _ = value.partition("://")
    backend = scheme.split("+", 1)[0].lower()
    if not separator or not backend:
        raise ValueError("is not a database URL (dialect[+driver]://user@host/db, or sqlite:///path)")
    if backend not in backends:
        raise ValueError(f"must be a {' or '.join(backends)} URL, got {backend}")
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


def on_off(value: object) -> object:
    """A switch that was a boolean before it had `auto` (CTAX_LABEL_PIPELINE): true / false, and their other
    spellings in an environment, keep their meaning as on / off; anything else is left for the field to judge."""
    spelled = str(value).strip().lower()
    return {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(spelled, value)
