"""Forms of the family pages. They parse what a browser posts, then pass it through the JSON API's own
input schemas (``care.schemas``), so the text and date rules are the API's; the services decide the rest."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from pydantic import ValidationError

from care.schemas import DoseIn, RefillIn
from messaging.schemas import MessageIn, ThreadIn


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
