from typing import Any

from django import forms
from django.core.validators import RegexValidator

from interviews.coding.spec import CODE_MAX_CHARS
from interviews.models import (
    CODING_MOCK_LENGTHS,
    CODING_MOCK_MINUTES,
    MOCK_LENGTHS,
    MOCK_MINUTES,
    Difficulty,
    InterviewSession,
    Language,
    Question,
    Topic,
)

MIN_ANSWER_CHARS = 10
MAX_ANSWER_CHARS = 5000
MAX_NOTE_CHARS = 2000


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
        choices=[(n, str(n)) for n in sorted({*MOCK_LENGTHS, *CODING_MOCK_LENGTHS})],
        coerce=int,
        required=False,
        empty_value=None,
        error_messages={"invalid_choice": "A mock interview has 3, 5 or 8 questions."},
    )
    minutes = forms.TypedChoiceField(
        choices=[(n, f"{n} minutes") for n in sorted({*MOCK_MINUTES, *CODING_MOCK_MINUTES})],
        coerce=int,
        required=False,
        empty_value=None,
        error_messages={"invalid_choice": "The time for an answer must be 3, 5 or 10 minutes."},
    )
    # "code": the topic's coding problems in `language` (its coding pool, a topic of its own).
    kind = forms.ChoiceField(
        choices=Topic.Kind.choices,
        required=False,
        error_messages={"invalid_choice": "Kind must be questions or code."},
    )
    language = forms.ChoiceField(
        choices=Language.choices,
        required=False,
        error_messages={"invalid_choice": "Language must be python, javascript or sql."},
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

    def _coding_pool(self, cleaned: dict[str, object]) -> Topic | None:
        """The coding pool a "code" session draws from, or None with the error added."""
        topic = cleaned.get("topic")
        if not isinstance(topic, Topic):
            return None
        if topic.is_code:  # a coding pool named directly
            return topic
        pools = {pool.language: pool for pool in topic.coding_pools.filter(is_active=True)}
        if not pools:
            self.add_error("kind", f"{topic.name} has no coding problems: choose Questions.")
            return None
        language = cleaned.get("language") or (next(iter(pools)) if len(pools) == 1 else "")
        if language not in pools:
            offered = ", ".join(Language(code).label for code in sorted(pools))
            self.add_error(
                "language", f"Coding in {topic.name} is offered in {offered}: choose one of them."
            )
            return None
        return pools[str(language)]

    def clean(self) -> dict[str, object]:
        """A coding session draws from its topic's coding pool in the chosen language. A mock
        interview needs its length and its time an answer (3, 5 or 8 questions of 3, 5 or 10
        minutes; a coding interview 1 to 3 problems of 20, 30 or 45); practice has neither."""
        cleaned = super().clean() or {}
        topic = cleaned.get("topic")
        if cleaned.get("kind") == Topic.Kind.CODE or (isinstance(topic, Topic) and topic.is_code):
            cleaned["topic"] = self._coding_pool(cleaned)
            if cleaned["topic"] is None:
                return cleaned
        code = isinstance(cleaned.get("topic"), Topic) and cleaned["topic"].is_code
        lengths, minutes = (
            (CODING_MOCK_LENGTHS, CODING_MOCK_MINUTES) if code else (MOCK_LENGTHS, MOCK_MINUTES)
        )
        what = "problems" if code else "questions"
        if cleaned.get("mode") == InterviewSession.Mode.MOCK:
            if cleaned.get("length") not in lengths and "length" not in self.errors:
                self.add_error("length", f"Choose how many {what}: {_either(lengths)}.")
            if cleaned.get("minutes") not in minutes and "minutes" not in self.errors:
                self.add_error(
                    "minutes", f"Choose the time for an answer: {_either(minutes)} minutes."
                )
        else:
            cleaned["length"] = cleaned["minutes"] = None
            # Practice ignores the mock's fields, whatever they hold.
            for name in ("length", "minutes"):
                self.errors.pop(name, None)
        return cleaned


def _either(choices: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in choices[:-1]) + f" or {choices[-1]}"


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


class CodeAnswerForm(forms.Form):
    """A solution to a coding problem (the editor enhances its textarea, which stays the form
    field), and an optional note on the approach and its complexity."""

    text = forms.CharField(
        label="Your code",
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 14,
                "maxlength": CODE_MAX_CHARS,
                "spellcheck": "false",
                "autocapitalize": "off",
                "class": "code-input",
            }
        ),
        error_messages={"required": "Write your code before you submit it."},
    )
    note = forms.CharField(
        label="Your approach and its complexity (optional)",
        required=False,
        strip=True,
        max_length=MAX_NOTE_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": MAX_NOTE_CHARS}),
        error_messages={
            "max_length": f"Your note is too long: at most {MAX_NOTE_CHARS:,} characters."
        },
    )

    def __init__(self, *args: Any, question: Question, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        language = (question.problem or {}).get("language", "")
        self.fields["text"].widget.attrs["data-code-language"] = language

    def clean_text(self) -> str:
        text = str(self.cleaned_data["text"])
        if not text.strip():
            raise forms.ValidationError("Write your code before you submit it.")
        if len(text) > CODE_MAX_CHARS:
            raise forms.ValidationError(
                f"Your code is too long: at most {CODE_MAX_CHARS:,} characters "
                f"(it has {len(text):,})."
            )
        return text
