"""The vocabulary of states and kinds, shared by the database, the API's schemas, the review page and the code.

Each is a StrEnum: its members are the strings stored in the database and sent over HTTP, so comparing a member
with a stored string works, and an unknown value fails loudly where it is parsed.
"""

from __future__ import annotations

from enum import StrEnum


class CreativeStatus(StrEnum):
    """queued -> processing -> labelled | failed; imported examples arrive labelled, without a prediction."""

    QUEUED = "queued"
    PROCESSING = "processing"
    LABELLED = "labelled"
    FAILED = "failed"


class Flag(StrEnum):
    """What the trigger says of a labelled creative."""

    NONE = "none"
    NEW_LABEL = "new_label"
    WRONG_LABEL = "wrong_label"
    LOW_CONFIDENCE = "low_confidence"


FLAG_TITLES = {
    Flag.NEW_LABEL: "Fits no existing label",
    Flag.WRONG_LABEL: "The asserted label looks wrong",
    Flag.LOW_CONFIDENCE: "The model is unsure between labels",
}


class LabelStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class Source(StrEnum):
    """Where a label, a creative or an annotation came from."""

    API = "api"
    IMPORT = "import"
    REVIEW = "review"
    PROPOSAL = "proposal"


class AnnotationKind(StrEnum):
    LABEL = "label"
    REJECT = "reject"  # "not a creative we label": no label


class ReviewStatus(StrEnum):
    OPEN = "open"
    DECIDED = "decided"


class Action(StrEnum):
    """A reviewer's decision on a review item."""

    CONFIRM = "confirm"
    RELABEL = "relabel"
    NEW_LABEL = "new_label"
    REJECT = "reject"


# Recorded in the audit trail beside the actions when a decision is undone.
REOPEN = "reopen"


class QueueOrder(StrEnum):
    PRIORITY = "priority"
    NEWEST = "newest"
    OLDEST = "oldest"
    SCORE = "score"
    SCORE_DESC = "-score"


class ProposalStatus(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class VersionKind(StrEnum):
    PRETRAINED = "pretrained"
    TRAINED = "trained"


class VersionStatus(StrEnum):
    """building -> candidate -> active -> retired; failed at any step before active."""

    BUILDING = "building"
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    FAILED = "failed"


class RunStatus(StrEnum):
    """A training run: queued -> running -> succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AccountKind(StrEnum):
    """Whom an account's creatives come from."""

    ADVERTISER = "advertiser"
    PARTNER = "partner"


class AccountStatus(StrEnum):
    """Whether an account's poster keys are let in (an admin suspends and resumes it), or it is being erased."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    ERASING = "erasing"


class Role(StrEnum):
    """What an API key may do; each role may do what the ones before it may."""

    POSTER = "poster"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


def vocabulary() -> dict[str, object]:
    """The enums as plain data, for the review page (which must not hard-code them)."""
    return {
        "flags": {flag.value: FLAG_TITLES.get(flag, flag.value) for flag in Flag if flag is not Flag.NONE},
        "actions": [action.value for action in Action],
        "review_statuses": [status.value for status in ReviewStatus],
        "creative_statuses": [status.value for status in CreativeStatus],
        "proposal_statuses": [status.value for status in ProposalStatus],
        "orders": [order.value for order in QueueOrder],
    }


class JobState(StrEnum):
    """Where a background (outbox) job stands; derived from its row, never stored (store/outbox.state_of)."""

    WAITING = "waiting"  # not sent yet (the broker away, or held back until not_before)
    SENT = "sent"  # queued; or running, for a task that does not say when it runs (training, discovery)
    RUNNING = "running"
    ENDED = "ended"
    FAILED = "failed"  # ended with an error, or given up after MAX_JOB_STARTS
