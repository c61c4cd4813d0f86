from django import forms
from django.core.validators import RegexValidator

from interviews.models import Difficulty, Topic

MIN_ANSWER_CHARS = 10
MAX_ANSWER_CHARS = 5000


class StartSessionForm(forms.Form):
    topic = forms.ModelChoiceField(
        queryset=Topic.objects.filter(is_active=True),
        to_field_name="slug",
        error_messages={
            "required": "Choose a topic.",
            "invalid_choice": "That topic does not exist. Choose one from the list.",
        },
    )
    difficulty = forms.ChoiceField(
        choices=Difficulty.choices,
        required=False,
        error_messages={"invalid_choice": "Difficulty must be easy, medium or hard."},
    )

    def clean_difficulty(self) -> str:
        return self.cleaned_data["difficulty"] or Difficulty.MEDIUM


class NextQuestionForm(forms.Form):
    request_id = forms.CharField(
        min_length=8,
        max_length=64,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9_-]+$", "request_id may contain only letters, digits, '-' and '_'."
            )
        ],
        error_messages={
            "required": "request_id is missing: reload the page and try again.",
            "min_length": "request_id must be 8 to 64 characters.",
            "max_length": "request_id must be 8 to 64 characters.",
        },
    )


class AnswerForm(forms.Form):
    text = forms.CharField(
        label="Your answer",
        strip=True,
        widget=forms.Textarea(attrs={"rows": 7, "maxlength": MAX_ANSWER_CHARS}),
        error_messages={"required": "Write your answer before asking for feedback."},
    )

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        if len(text) < MIN_ANSWER_CHARS:
            raise forms.ValidationError(
                f"Your answer is too short: write at least {MIN_ANSWER_CHARS} characters."
            )
        if len(text) > MAX_ANSWER_CHARS:
            raise forms.ValidationError(
                f"Your answer is too long: at most {MAX_ANSWER_CHARS:,} characters "
                f"(it has {len(text):,})."
            )
        return str(text)
