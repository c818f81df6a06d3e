"""A search request as it travels from the API to the index owner (JSON through the broker): light enough for the
API to import (no towers, no index)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ctax.enums import CreativeStatus, Flag, ReviewStatus
from ctax.store.repos.search import SearchFilter


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    image: bytes | None = None
    creative_id: str | None = None
    filter: SearchFilter = field(default_factory=SearchFilter)
    limit: int = 10
    labels_limit: int = 5

    @property
    def kind(self) -> str:
        if self.creative_id:
            return "creative"
        return "+".join(name for name, given in (("text", self.text), ("image", self.image)) if given)

    def to_json(self) -> dict[str, Any]:
        """The task's argument (JSON through the broker)."""
        f = self.filter
        return {
            "text": self.text, "creative_id": self.creative_id,
            "image_base64": base64.b64encode(self.image).decode() if self.image else None,
            "limit": self.limit, "labels_limit": self.labels_limit,
            "filter": {"label_id": f.label_id, "flags": [str(x) for x in f.flags],
                       "statuses": [str(x) for x in f.statuses],
                       "review_statuses": [str(x) for x in f.review_statuses], "account_id": f.account_id,
                       "created_after": f.created_after.isoformat() if f.created_after else None,
                       "created_before": f.created_before.isoformat() if f.created_before else None},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchQuery:
        f = data.get("filter") or {}

        def when(value: str | None) -> dt.datetime | None:
            return dt.datetime.fromisoformat(value) if value else None

        return cls(
            text=data.get("text"), creative_id=data.get("creative_id"),
            image=base64.b64decode(data["image_base64"]) if data.get("image_base64") else None,
            limit=int(data.get("limit", 10)), labels_limit=int(data.get("labels_limit", 5)),
            filter=SearchFilter(
                label_id=f.get("label_id"), flags=[Flag(x) for x in f.get("flags") or []],
                statuses=[CreativeStatus(x) for x in f.get("statuses") or []],
                review_statuses=[ReviewStatus(x) for x in f.get("review_statuses") or []],
                account_id=f.get("account_id"), created_after=when(f.get("created_after")),
                created_before=when(f.get("created_before"))),
        )
