"""Forms of the website: the submission upload and the sign-up."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from leaderboard.models import Split


class SubmissionForm(forms.Form):
    """The submit page: which split, how the method is named, and the zip itself."""

    split = forms.ModelChoiceField(
        queryset=Split.objects.none(),
        empty_label=None,
        help_text="The split whose public inputs you predicted.",
    )
    method_name = forms.CharField(max_length=200, help_text="Shown on the leaderboard.")
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Model, training data and inference settings.",
    )
    paper_url = forms.URLField(required=False, max_length=500, assume_scheme="https", label="Paper URL")
    code_url = forms.URLField(required=False, max_length=500, assume_scheme="https", label="Code URL")
    is_public = forms.BooleanField(
        required=False, initial=True, label="Show on the public leaderboard",
        help_text="A private entry is scored and visible only to you.",
    )
    file = forms.FileField(
        label="Predictions (.zip)",
        help_text="One RGBA PNG per sample (and candidate), the size of the sample's image.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
    )

    def __init__(self, *args, splits=None, **kwargs):
        super().__init__(*args, **kwargs)
        if splits is not None:
            self.fields["split"].queryset = splits

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError(
                "%(name)s is not a .zip file; upload a zip archive of PNG files.",
                code="not_zip",
                params={"name": upload.name},
            )
        return upload


class SignupForm(UserCreationForm):
    """Django's user creation form with an optional e-mail address."""

    email = forms.EmailField(required=False, help_text="Optional; used only to reach you about your entries.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
