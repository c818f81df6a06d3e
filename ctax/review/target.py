"""The label a decision applies: confirm takes the suggested label, relabel an existing active one, new_label
creates one under an existing parent, reject applies none. Validation writes nothing, except new_label's label."""

from __future__ import annotations

from ctax.enums import Action, LabelStatus, Source
from ctax.errors import InvalidInput
from ctax.store.models import Label, ReviewItem
from ctax.store.session import Session
from ctax.taxonomy import catalog
from ctax.taxonomy.paths import LabelPath

ACTIONS = tuple(Action)


def check_action(action: str) -> Action:
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}, got {action!r}", field="action")
    return Action(action)


def new_label_path(reference: str | int | None) -> LabelPath:
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidInput("new_label needs label: the new path, e.g. Product/Pets/Dog Toys", field="label")
    try:
        path = LabelPath.parse(reference)
    except InvalidInput as exc:
        raise InvalidInput(f"label: {exc.message}", field="label") from exc
    if path.parent is None:
        raise InvalidInput(
            f"label: a new label goes under an existing parent; {path} has none (write Parent/{path})", field="label"
        )
    return path


def create_reviewed_label(session: Session, reference: str | int | None, source: Source = Source.REVIEW) -> Label:
    """A reviewer's new label: a new path under an existing, active parent; duplicates are refused."""
    path = new_label_path(reference)
    try:
        return catalog.create_label(session, path, source=source)
    except InvalidInput as exc:
        raise InvalidInput(f"label: {exc.message}", **{**exc.detail, "field": "label"}) from exc


def names_label(label: Label, reference: str | int) -> bool:
    """Whether a label reference (an id, or a path in any spelling LabelPath accepts) names this label."""
    if isinstance(reference, int) or str(reference).isdigit():
        return int(reference) == label.id
    try:
        return str(LabelPath.parse(str(reference))) == label.path
    except InvalidInput:
        return False


def _suggested(session: Session, item: ReviewItem, reference: str | int | None) -> Label:
    if item.suggested_label_id is None:
        raise InvalidInput(
            f"review item {item.id} has no suggested label to confirm; relabel it or name a new label",
            field="action",
        )
    label = catalog.get_label(session, item.suggested_label_id)
    if reference is not None and catalog.resolve_active(session, reference).id != label.id:
        raise InvalidInput(
            f"confirm applies the suggested label {label.path}; to apply another, send action relabel",
            field="label",
        )
    if label.status != LabelStatus.ACTIVE:
        raise InvalidInput(f"the suggested label {label.path} was retired; relabel this item", field="action")
    return label


def target_label(session: Session, item: ReviewItem, action: Action, reference: str | int | None,
                 note: str | None, given: Label | None) -> Label | None:
    """The label the decision applies (None for reject); `given` is one already chosen (a bulk's new label)."""
    if action is Action.REJECT:
        if reference is not None:
            raise InvalidInput("reject takes no label: send action relabel to change the label", field="label")
        if not (note or "").strip():
            raise InvalidInput("reject needs a reason in note (e.g. 'not an ad')", field="note")
        return None
    if given is not None:
        return given
    if action is Action.CONFIRM:
        return _suggested(session, item, reference)
    if action is Action.RELABEL:
        if reference is None or reference == "":
            raise InvalidInput("relabel needs label: an existing label path or id", field="label")
        return catalog.resolve_active(session, reference)
    return create_reviewed_label(session, reference)
