"""Forms of the family pages. They parse what a browser posts, then pass it through the JSON API's own
input schemas (``care.schemas``), so the text and date rules are the API's; the services decide the rest."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from pydantic import ValidationError

from care.schemas import DoseIn, RefillIn


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
