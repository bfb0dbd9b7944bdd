"""Forms of the family pages. They parse what a browser posts, then pass it through the JSON API's own
input schemas (``care.schemas``), so the text and date rules are the API's; the services decide the rest."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from pydantic import ValidationError

from care.schemas import ChangeRequestIn, CoverageIn, DoseIn, RefillIn
from messaging.schemas import MessageIn, PreferencesIn, ThreadIn


class DoseForm(forms.Form):
    """A dose due, answered with one of two buttons (``status`` is the button pressed)."""

    client_id = forms.UUIDField(widget=forms.HiddenInput)
    status = forms.ChoiceField(choices=[("given", "given"), ("skipped", "skipped")])
    scheduled_for = forms.DateTimeField(required=False, widget=forms.HiddenInput)

    @classmethod
    def for_dose(cls, dose: dict[str, Any]) -> DoseForm:
        """The form for one dose on the page: a fresh ``client_id``, so a double tap records once."""
        at = None if dose["as_needed"] else dose["at"].isoformat()
        # auto_id=False: many of these forms share a page, and element ids must be unique.
        return cls(initial={"client_id": uuid.uuid4(), "scheduled_for": at}, auto_id=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                return DoseIn(**data).dict()
            except ValidationError:
                raise forms.ValidationError(_("This dose cannot be recorded."), code="invalid") from None
        return data


class RefillForm(forms.Form):
    pharmacy = forms.CharField(label=_("Pharmacy"), required=False, max_length=120)
    note = forms.CharField(
        label=_("Note for the care team (optional)"), required=False, max_length=1000, widget=forms.Textarea
    )
    key = forms.UUIDField(widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("pharmacy", "note"):
            if name in data:
                try:
                    RefillIn(**{name: data[name]})
                except ValidationError:
                    self.add_error(name, _("Remove the control characters from this text."))
        return data


# -- the family's other pages (web/family.py) -------------------------------------------------------


class ChangeRequestForm(forms.Form):
    """Ask the care team to cancel or move a visit: why, and which times would suit (``ChangeRequestIn``)."""

    action = forms.ChoiceField(
        label=_("What would you like?"),
        choices=[("reschedule", _("Move it to another time")), ("cancel", _("Cancel it"))],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(label=_("Reason (optional)"), required=False, max_length=500, widget=forms.Textarea)
    preferred_times = forms.CharField(
        label=_("Times that would suit you (optional)"), required=False, max_length=400, widget=forms.Textarea
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        parts = [data["reason"].strip()]
        if data["preferred_times"].strip():
            # Staff read this note as written; the label tells them what the second part is.
            parts.append("Preferred times: " + data["preferred_times"].strip())
        note = "\n".join(part for part in parts if part)
        try:
            ChangeRequestIn(action=data["action"], note=note)
        except ValidationError:
            raise forms.ValidationError(_("Remove the control characters from this text."), code="invalid") from None
        return {"action": data["action"], "note": note}


class CoverageForm(forms.Form):
    """New insurance card details (``CoverageIn``'s rules) and, optionally, a photo of the card."""

    payer = forms.CharField(label=_("Insurance company"), max_length=120)
    member_id = forms.CharField(label=_("Member ID"), max_length=60)
    plan_name = forms.CharField(label=_("Plan name (optional)"), required=False, max_length=120)
    group_number = forms.CharField(label=_("Group number (optional)"), required=False, max_length=60)
    subscriber_name = forms.CharField(label=_("Name of the policy holder (optional)"), required=False, max_length=150)
    subscriber_relationship = forms.ChoiceField(
        label=_("The policy holder is the child's"),
        choices=[("parent", _("Parent")), ("self", _("The child")), ("spouse", _("Spouse")), ("other", _("Other"))],
        initial="parent",
    )
    period_start = forms.DateField(label=_("Coverage starts (optional)"), required=False)
    period_end = forms.DateField(label=_("Coverage ends (optional)"), required=False)
    photo = forms.FileField(label=_("Photo of the card (optional)"), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        details = {key: value for key, value in data.items() if key != "photo"}
        try:
            data.update(CoverageIn(**details).dict(exclude={"copays"}))
        except ValidationError as error:
            for problem in error.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                if name in ("period_start", "period_end"):
                    message = _("This date is not possible for a card.")
                else:
                    message = _("Remove the control characters from this text.")
                self.add_error(name if name in self.fields else None, message)
            return data
        if data["period_start"] and data["period_end"] and data["period_end"] < data["period_start"]:
            self.add_error("period_end", _("The end date must come after the start date."))
        return data


class PreferencesForm(forms.Form):
    """Email, SMS and quiet hours (``PreferencesIn``): both quiet times, or neither."""

    email = forms.BooleanField(label=_("Email me about new messages and changes"), required=False)
    sms = forms.BooleanField(label=_("Text me (SMS) about new messages and changes"), required=False)
    quiet_start = forms.TimeField(label=_("Quiet from"), required=False, widget=forms.TimeInput(attrs={"type": "time"}))
    quiet_end = forms.TimeField(label=_("Quiet until"), required=False, widget=forms.TimeInput(attrs={"type": "time"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            raise forms.ValidationError(_("Give both quiet-hour times, or leave both empty."), code="quiet_hours")
        if not self.errors:
            PreferencesIn(**data)
        return data


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=[("en", "English"), ("es", "Español")])


# -- the messenger ----------------------------------------------------------------------------------


class _Files(forms.ClearableFileInput):
    allow_multiple_selected = True


class _MultipleFiles(forms.FileField):
    def clean(self, data: Any, initial: Any = None) -> Any:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


def _file_inputs() -> dict[str, forms.Field]:
    """The camera's photo and chosen files; the views check each one with the messenger's upload rules
    (``messaging.files``) inside the transaction that sends the message."""
    return {
        "photo": forms.FileField(
            label=_("Take a photo"),
            required=False,
            widget=forms.ClearableFileInput(attrs={"accept": "image/*,application/pdf", "capture": "environment"}),
        ),
        "files": _MultipleFiles(
            label=_("Attach photos or PDF files"),
            help_text=_("JPEG, PNG or PDF, up to 10 MB each, at most 5 per message."),
            required=False,
            widget=_Files(attrs={"accept": "image/*,application/pdf", "multiple": True}),
        ),
    }


class ReplyForm(forms.Form):
    """A message in a conversation (the text rules are the API's ``MessageIn``)."""

    body = forms.CharField(label=_("Your message"), max_length=10_000, widget=forms.Textarea(attrs={"rows": 4}))
    client_id = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields.update(_file_inputs())

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "body" in data:
            try:
                MessageIn(body=data["body"], client_id=uuid.uuid4())
            except ValidationError:
                self.add_error("body", _("Remove the control characters from this text."))
        return data


class NewThreadForm(ReplyForm):
    """A new conversation: subject, topic and the first message (the API's ``ThreadIn`` rules)."""

    subject = forms.CharField(label=_("Subject"), max_length=200)
    topic = forms.ChoiceField(label=_("Topic"), choices=[])
    field_order = ["subject", "topic", "body", "photo", "files", "client_id"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from web.wording import TOPICS

        self.fields["topic"].choices = [(value, text) for value, text in TOPICS.items()]  # type: ignore[attr-defined]
        self.order_fields(self.field_order)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "subject" in data:
            try:
                ThreadIn(subject=data["subject"], topic="other", body="-", client_id=uuid.uuid4(), confidential=False)
            except ValidationError:
                self.add_error("subject", _("Remove the control characters from this text."))
        return data


class AssignForm(forms.Form):
    """Assign a conversation to a clinician of the child's care team."""

    assignee = forms.TypedChoiceField(label=_("Assign to"), coerce=uuid.UUID, choices=[])

    def __init__(self, *args: Any, clinicians: list[tuple[uuid.UUID, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [(str(pk), name) for pk, name in clinicians]  # type: ignore[attr-defined]


class InboxFilterForm(forms.Form):
    """The inbox's filters (enum values and a pool's id: nothing about a child goes in the URL)."""

    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[
            ("", _("Open")),
            ("awaiting_care_team", _("Waiting for the care team")),
            ("awaiting_family", _("The care team answered")),
            ("closed", _("Closed")),
        ],
    )
    priority = forms.ChoiceField(
        label=_("Priority"),
        required=False,
        choices=[("", _("Any")), ("urgent", _("Urgent")), ("routine", _("Routine"))],
    )
    pool = forms.TypedChoiceField(label=_("Pool"), required=False, coerce=uuid.UUID, empty_value=None, choices=[])

    def __init__(self, *args: Any, pools: list[tuple[uuid.UUID, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pool"].choices = [("", _("All my pools"))] + [(str(pk), name) for pk, name in pools]  # type: ignore[attr-defined]
