"""Label paths: a label is a path of names from a root, such as Service/Vehicles/Maintenance/Honda.

A label path is a tuple of names, root first. Its text form joins names with "/"; a "/" inside a name
(IAB has "Printers/Copiers/Scanners/Fax") is written "\\/" and a backslash "\\\\", so every path has
exactly one text form and round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ctax.errors import InvalidInput

MAX_NAME_CHARS = 200
MAX_DEPTH = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class LabelPath:
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise InvalidInput("a label path needs at least one name")
        if len(self.names) > MAX_DEPTH:
            raise InvalidInput(f"a label path has at most {MAX_DEPTH} levels, got {len(self.names)}")
        for name in self.names:
            if not name or name != name.strip():
                raise InvalidInput(f"label names must be non-empty and trimmed: {name!r}")
            if len(name) > MAX_NAME_CHARS:
                raise InvalidInput(f"label name longer than {MAX_NAME_CHARS} characters: {name[:40]!r}...")
            if _CONTROL.search(name):
                raise InvalidInput(f"label name contains control characters: {name!r}")

    @classmethod
    def parse(cls, text: str) -> LabelPath:
        if not isinstance(text, str):
            raise InvalidInput(f"a label path must be a string, got {type(text).__name__}")
        names: list[str] = []
        current: list[str] = []
        chars = iter(text)
        for char in chars:
            if char == "\\":
                escaped = next(chars, None)
                if escaped not in ("/", "\\"):
                    raise InvalidInput(f"bad escape in label path {text!r}: use \\/ or \\\\")
                current.append(escaped)
            elif char == "/":
                names.append("".join(current).strip())
                current = []
            else:
                current.append(char)
        names.append("".join(current).strip())
        if any(not name for name in names):
            raise InvalidInput(f"label path {text!r} has an empty name")
        return cls(tuple(names))

    @classmethod
    def of(cls, *names: str) -> LabelPath:
        return cls(tuple(name.strip() for name in names))

    def __str__(self) -> str:
        return "/".join(name.replace("\\", "\\\\").replace("/", "\\/") for name in self.names)

    @property
    def leaf(self) -> str:
        return self.names[-1]

    @property
    def depth(self) -> int:
        return len(self.names)

    @property
    def parent(self) -> LabelPath | None:
        return LabelPath(self.names[:-1]) if len(self.names) > 1 else None

    def ancestors(self) -> Iterator[LabelPath]:
        """Parents first, root last."""
        for end in range(len(self.names) - 1, 0, -1):
            yield LabelPath(self.names[:end])

    def child(self, name: str) -> LabelPath:
        return LabelPath((*self.names, name.strip()))

    def phrase(self, template: str = "{path}") -> str:
        """The text the text tower encodes for this label. Placeholders: {path} (names joined by "/"),
        {pretty_path} (joined by " > "), {leaf}, {parent} and {ancestors} (the leaf itself at the root),
        {root} (alias {tier1}). An unknown placeholder raises InvalidInput."""
        values = {
            "path": "/".join(self.names),
            "pretty_path": " > ".join(self.names),
            "leaf": self.leaf,
            "parent": self.names[-2] if len(self.names) > 1 else self.leaf,
            "ancestors": " > ".join(self.names[:-1]) or self.leaf,
            "root": self.names[0],
            "tier1": self.names[0],
        }
        try:
            return template.format(**values).strip()
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInput(f"label template {template!r} is invalid ({exc}); placeholders: "
                               + ", ".join("{" + k + "}" for k in values)) from exc

    def is_ancestor_of(self, other: LabelPath) -> bool:
        return len(self.names) < len(other.names) and other.names[: len(self.names)] == self.names

