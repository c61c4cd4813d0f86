"""The built-in question bank: JSON files in interviews/bank/, loaded into the database.

`migrate` loads it (a post_migrate handler), and so does `manage.py load_question_bank`.
Loading is idempotent: a question is keyed by its `key`; staff edits in the admin are kept.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from interviews.exceptions import OffSchema
from interviews.models import Question, Topic, question_fingerprint
from interviews.spec import QuestionSpec

BANK_DIR = Path(__file__).resolve().parent / "bank"


class BankFileError(ValueError):
    """A bank file does not have the expected shape."""


@dataclass(frozen=True)
class BankQuestion:
    key: str  # stable across releases: "reactjs-001"
    spec: QuestionSpec  # the same contract as a generated question's


@dataclass(frozen=True)
class BankFile:
    slug: str
    name: str
    description: str
    order: int
    questions: list[BankQuestion]


@dataclass(frozen=True)
class LoadResult:
    topics: int
    created: int
    unchanged: int


def bank_file_read(*, path: Path) -> BankFile:
    """Parse and validate one bank file; raise BankFileError naming the file and the problem.

    Each question must pass QuestionSpec, exactly as a question from the LLM does."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BankFileError(f"{path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise BankFileError(f"{path.name}: not a JSON object")
    for field in ("slug", "name", "questions"):
        if not data.get(field):
            raise BankFileError(f"{path.name}: missing '{field}'")
    if not isinstance(data["questions"], list):
        raise BankFileError(f"{path.name}: 'questions' is not a list")
    questions: list[BankQuestion] = []
    keys: set[str] = set()
    texts: set[str] = set()
    for index, item in enumerate(data["questions"], start=1):
        where = f"{path.name} question {index}"
        if not isinstance(item, dict):
            raise BankFileError(f"{where}: not a JSON object")
        fields = dict(item)
        key = fields.pop("key", None)
        try:
            spec = QuestionSpec.parse(fields)
        except OffSchema as exc:
            raise BankFileError(f"{where}: {exc.detail}") from None
        text = spec.text.casefold()
        if not isinstance(key, str) or not key or key in keys or text in texts:
            raise BankFileError(f"{where}: missing or repeated key or text")
        keys.add(key)
        texts.add(text)
        questions.append(BankQuestion(key=key, spec=spec))
    return BankFile(
        slug=str(data["slug"]),
        name=str(data["name"]),
        description=str(data.get("description", "")),
        order=int(data.get("order", 0)),
        questions=questions,
    )


def bank_load(*, directory: Path = BANK_DIR) -> LoadResult:
    """Create the topics and questions the database does not have yet."""
    files = sorted(directory.glob("*.json"))
    parsed = [bank_file_read(path=path) for path in files]  # validate all before writing any
    created = unchanged = 0
    with transaction.atomic():
        for bank in parsed:
            topic, _ = Topic.objects.get_or_create(
                slug=bank.slug,
                defaults={"name": bank.name, "description": bank.description, "order": bank.order},
            )
            existing = set(
                Question.objects.filter(bank_key__startswith=f"{bank.slug}-").values_list(
                    "bank_key", flat=True
                )
            )
            # A generated question with the same wording already sits in the pool: keep that one.
            wordings = set(topic.questions.values_list("fingerprint", flat=True))
            new = [
                Question(
                    topic=topic,
                    bank_key=item.key,
                    difficulty=item.spec.difficulty,
                    text=item.spec.text,
                    key_points=list(item.spec.key_points),
                    outline=item.spec.outline,
                    source=Question.Source.BANK,
                )
                for item in bank.questions
                if item.key not in existing and question_fingerprint(item.spec.text) not in wordings
            ]
            for question in new:
                question.save()
            created += len(new)
            unchanged += len(bank.questions) - len(new)
    return LoadResult(topics=len(parsed), created=created, unchanged=unchanged)
