"""Forms of the operator console: every control asks for a reason; risky ones for a confirmation.

A form that posts an operator verb says which of its fields the verb's service takes
(``operator_params``) and where the service's refusal is shown (``error_field``).
"""

from collections.abc import Mapping
from typing import Any, cast

from django import forms

from orchestration.adapters import action_types
from orchestration.exceptions import InvalidAction, InvalidPayload
from orchestration.models import MAX_PRIORITY, MIN_PRIORITY
from orchestration.services.control import MAX_REASON_LENGTH, control_paused_types
from orchestration.services.enqueue import MAX_IDEMPOTENCY_KEY_LENGTH, action_fields_clean, action_payload_from_json
from orchestration.services.operator import MAX_BULK_ACTIONS
from orchestration.services.operator_verb import (
    CONFIRM_TICK,
    CONFIRM_TYPE_REAL,
    CONSOLE_ACTIONS,
    CONSOLE_ATTENTION,
    CONSOLE_FLAGS,
    CONSOLE_TYPES,
    OperatorVerb,
)

REAL_CONFIRMATION = "REAL"


def reason_field() -> forms.CharField:
    return forms.CharField(
        max_length=MAX_REASON_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "Why? (recorded in the audit trail)", "size": 34}),
        error_messages={"required": "Give a reason: it is recorded in the audit trail."},
    )


class ReasonForm(forms.Form):
    reason = reason_field()

    error_field = "reason"

    def operator_params(self) -> dict[str, Any]:
        return {}


class KillForm(ReasonForm):
    confirm = forms.BooleanField(
        label="Yes, stop the daemon now",
        error_messages={"required": "Tick the box to confirm: kill makes every daemon release its lease and exit."},
    )


class RealModeForm(ReasonForm):
    confirmation = forms.CharField(
        label=f"Type {REAL_CONFIRMATION} to confirm",
        max_length=20,
        widget=forms.TextInput(attrs={"size": 6, "autocomplete": "off"}),
    )

    def clean_confirmation(self) -> str:
        value = self.cleaned_data["confirmation"].strip()
        if value != REAL_CONFIRMATION:
            raise forms.ValidationError(
                f"Type {REAL_CONFIRMATION} (in capitals) to confirm: in REAL mode actions act on the world."
            )
        return value


class ActionIdsField(forms.Field):
    """Action ids sent as repeated ``action_ids`` values (the checkboxes of the table of actions needing attention)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: list[str] | None) -> list[int]:
        ids = []
        for item in value or []:
            try:
                pk = int(item)
            except (TypeError, ValueError):
                raise forms.ValidationError(f"{item!r} is not an action id.") from None
            if pk <= 0:
                raise forms.ValidationError(f"{item!r} is not an action id.")
            ids.append(pk)
        return ids


def flag_form_class(verb: OperatorVerb) -> type[ReasonForm]:
    """The form of a control-flag verb: a reason, and the confirmation the verb asks for."""
    return {CONFIRM_TICK: KillForm, CONFIRM_TYPE_REAL: RealModeForm}.get(verb.confirm, ReasonForm)


class AttentionForm(ReasonForm):
    """Retry or discard the actions that wait for a person: DLQ and NEEDS_REVIEW."""

    SELECTED, ALL = "selected", "all"

    scope = forms.ChoiceField(
        choices=[
            (SELECTED, "Selected actions"),
            (ALL, f"All DLQ and NEEDS_REVIEW actions (oldest {MAX_BULK_ACTIONS:,} at most)"),
        ],
        initial=SELECTED,
        widget=forms.RadioSelect,
    )
    action_ids = ActionIdsField(required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("scope") == self.SELECTED:
            ids = cleaned.get("action_ids") or []
            if not ids and "action_ids" not in self.errors:
                self.add_error("action_ids", "Select at least one DLQ action or NEEDS_REVIEW action, or choose all.")
            elif len(ids) > MAX_BULK_ACTIONS:
                self.add_error("action_ids", f"At most {MAX_BULK_ACTIONS:,} actions per request.")
        return cleaned

    def operator_params(self) -> dict[str, Any]:
        """The ids to act on, or None for all DLQ and NEEDS_REVIEW actions."""
        ids = None if self.cleaned_data["scope"] == self.ALL else self.cleaned_data["action_ids"]
        return {"action_ids": ids}


class EnqueueForm(ReasonForm):
    field_order = [
        "action_type",
        "payload",
        "idempotency_key",
        "not_before",
        "priority",
        "requires_approval",
        "reason",
    ]

    # The initial type matches the initial payload, and needs no LLM.
    action_type = forms.ChoiceField(choices=[], initial="POST_SOCIAL")
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 46, "spellcheck": "false"}),
        initial='{"platform": "twitter", "message": "Hello from the AOL console"}',
        help_text="A JSON object; the action type's adapter validates it.",
    )
    idempotency_key = forms.CharField(
        required=False,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        help_text="Optional. The same key with the same payload returns the existing action.",
    )
    not_before = forms.DateTimeField(
        required=False,
        label="Not before (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
        help_text="Optional; empty means as soon as possible.",
    )

    priority = forms.IntegerField(
        required=False,
        initial=0,
        min_value=MIN_PRIORITY,
        max_value=MAX_PRIORITY,
        widget=forms.NumberInput(attrs={"class": "narrow"}),
        help_text=f"{MIN_PRIORITY} to {MAX_PRIORITY}; higher runs first (empty: 0).",
    )

    def clean_priority(self) -> int:
        return self.cleaned_data["priority"] or 0

    requires_approval = forms.BooleanField(
        required=False,
        label="Requires approval",
        help_text="In REAL mode, a person approves its PROOF artifact before it runs for real.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["action_type"]).choices = [(name, name) for name in action_types()]

    def clean_payload(self) -> dict[str, Any]:
        try:
            return action_payload_from_json(text=self.cleaned_data["payload"])
        except InvalidPayload as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        names = ("action_type", "payload", "idempotency_key", "not_before", "priority", "requires_approval")
        if all(name in cleaned for name in names):  # each field is well-formed: now what the queue says of them
            try:
                action_fields_clean(
                    action_type=cleaned["action_type"],
                    payload=cleaned["payload"],
                    idempotency_key=cleaned["idempotency_key"] or None,
                    not_before=cleaned["not_before"],
                    priority=cleaned["priority"],
                    requires_approval=cleaned["requires_approval"],
                )
            except InvalidAction as exc:
                self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        return cleaned


class ApproveForm(ReasonForm):
    """Approve the artifact the person reviewed: its SHA-256 travels with the form."""

    sha256 = forms.CharField(max_length=64, widget=forms.HiddenInput)


class RejectForm(ReasonForm):
    pass


#: How each editable payload field is edited on the approval page (services/approval.py EDITABLE_FIELDS).
EDIT_WIDGETS = {
    "message": forms.Textarea(attrs={"rows": 6, "cols": 70}),
    "body": forms.Textarea(attrs={"rows": 10, "cols": 70}),
    "subject": forms.TextInput(attrs={"size": 70}),
}


class EditForm(ReasonForm):
    """Edit the text of an action awaiting approval: one field per editable payload field, and a reason."""

    def __init__(self, *args: Any, fields: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edited = fields
        for name in fields:
            # Not stripped: the text is sent as written, and a blank one is the adapter's to refuse.
            self.fields[name] = forms.CharField(
                required=False, strip=False, label=name.capitalize(), widget=EDIT_WIDGETS.get(name, forms.Textarea)
            )
        self.order_fields([*fields, "reason"])

    def changes(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(name) or "" for name in self.edited}


class TypePauseForm(ReasonForm):
    action_type = forms.ChoiceField(choices=[], label="Action type")

    error_field = "action_type"

    def __init__(self, *args: Any, paused: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Known types, plus any paused name whose adapter has gone (so it can still be resumed).
        names = sorted(set(action_types()) | set(paused or ()))
        cast(forms.ChoiceField, self.fields["action_type"]).choices = [(name, name) for name in names]

    def operator_params(self) -> dict[str, Any]:
        return {"action_type": self.cleaned_data["action_type"]}


class ActionIdsTextField(forms.CharField):
    """Action ids typed as ``12, 13 14`` or ``#12 #13``."""

    # The field cleans to a list of ids; the stubs pin CharField.to_python to a string.
    def to_python(self, value: str | None) -> list[int]:  # type: ignore[override]
        text = super().to_python(value) or ""
        ids = []
        for item in text.replace(",", " ").split():
            item = item.lstrip("#")
            if not item.isdigit() or int(item) <= 0:
                raise forms.ValidationError(f"{item!r} is not an action id.")
            ids.append(int(item))
        if len(ids) > MAX_BULK_ACTIONS:
            raise forms.ValidationError(f"At most {MAX_BULK_ACTIONS:,} actions per request.")
        return ids


class QueueActionsForm(ReasonForm):
    """Requeue, cancel or reprioritise actions named by id; ``verb`` is the one posted."""

    field_order = ["action_ids", "priority", "reason"]
    error_field = "action_ids"

    action_ids = ActionIdsTextField(
        label="Action ids",
        max_length=20000,
        widget=forms.TextInput(attrs={"placeholder": "e.g. 12, 13, 20", "size": 24}),
        error_messages={"required": "Name at least one action id."},
    )
    priority = forms.IntegerField(
        required=False,
        min_value=MIN_PRIORITY,
        max_value=MAX_PRIORITY,
        widget=forms.NumberInput(attrs={"class": "narrow"}),
        help_text=f"For “Set priority”: {MIN_PRIORITY} to {MAX_PRIORITY}.",
    )

    def __init__(self, *args: Any, verb: OperatorVerb, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verb = verb

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if "priority" in self.verb.asks and cleaned.get("priority") is None and "priority" not in self.errors:
            self.add_error("priority", "Give the new priority.")
        return cleaned

    def operator_params(self) -> dict[str, Any]:
        asked = {name: self.cleaned_data[name] for name in self.verb.asks}
        return {"action_ids": self.cleaned_data["action_ids"], **asked}


#: The prefix of each console form that offers several verbs (the flags' forms are prefixed by their verb).
FORM_PREFIXES = {CONSOLE_ATTENTION: "dlq", CONSOLE_TYPES: "types", CONSOLE_ACTIONS: "queue"}


def verb_form(
    verb: OperatorVerb, data: Mapping[str, Any] | None = None, *, paused: list[str] | None = None
) -> ReasonForm:
    """The console form that posts ``verb``."""
    if verb.console == CONSOLE_FLAGS:
        return flag_form_class(verb)(data, prefix=verb.name)
    prefix = FORM_PREFIXES[verb.console]
    if verb.console == CONSOLE_ATTENTION:
        return AttentionForm(data, prefix=prefix)
    if verb.console == CONSOLE_TYPES:
        if paused is None:
            paused = [pause.action_type for pause in control_paused_types()]
        return TypePauseForm(data, prefix=prefix, paused=paused)
    return QueueActionsForm(data, prefix=prefix, verb=verb)
