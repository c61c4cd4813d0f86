from django import forms
from django.core.validators import RegexValidator

from interviews.models import MOCK_LENGTHS, MOCK_MINUTES, Difficulty, InterviewSession, Topic

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

    mode = forms.ChoiceField(
        choices=InterviewSession.Mode.choices,
        required=False,
        error_messages={"invalid_choice": "Mode must be practice or mock."},
    )
    length = forms.TypedChoiceField(
        choices=[(n, f"{n} questions") for n in MOCK_LENGTHS],
        coerce=int,
        required=False,
        empty_value=None,
        error_messages={"invalid_choice": "A mock interview has 3, 5 or 8 questions."},
    )
    minutes = forms.TypedChoiceField(
        choices=[(n, f"{n} minutes") for n in MOCK_MINUTES],
        coerce=int,
        required=False,
        empty_value=None,
        error_messages={"invalid_choice": "The time for an answer must be 3, 5 or 10 minutes."},
    )

    focus = forms.ChoiceField(
        choices=[("weak", "Practise weak spots")],
        required=False,
        error_messages={"invalid_choice": "Focus can only be weak spots."},
    )

    def clean_difficulty(self) -> str:
        return self.cleaned_data["difficulty"] or Difficulty.MEDIUM

    def clean_mode(self) -> str:
        return self.cleaned_data["mode"] or InterviewSession.Mode.PRACTICE

    def clean(self) -> dict[str, object]:
        """A mock interview needs its length and its time an answer; practice has neither."""
        cleaned = super().clean() or {}
        if cleaned.get("mode") == InterviewSession.Mode.MOCK:
            if cleaned.get("length") is None and "length" not in self.errors:
                self.add_error("length", "Choose how many questions: 3, 5 or 8.")
            if cleaned.get("minutes") is None and "minutes" not in self.errors:
                self.add_error("minutes", "Choose the time for an answer: 3, 5 or 10 minutes.")
        else:
            cleaned["length"] = cleaned["minutes"] = None
            # Practice ignores the mock's fields, whatever they hold.
            for name in ("length", "minutes"):
                self.errors.pop(name, None)
        return cleaned


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


class MockAnswerForm(forms.Form):
    """A mock interview's answer, as it stands when submitted: empty when the time ran out."""

    text = forms.CharField(
        label="Your answer",
        required=False,
        strip=True,
        max_length=MAX_ANSWER_CHARS,
        widget=forms.Textarea(attrs={"rows": 9, "maxlength": MAX_ANSWER_CHARS}),
        error_messages={
            "max_length": f"Your answer is too long: at most {MAX_ANSWER_CHARS:,} characters."
        },
    )
