"""The built-in question bank: JSON files in interviews/bank/, loaded into the database.

`migrate` loads it (a post_migrate handler), and so does `manage.py load_question_bank`.
Loading is idempotent: a question is keyed by its `key`; staff edits in the admin are kept.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from interviews.models import Difficulty, Question, Topic, question_fingerprint

BANK_DIR = Path(__file__).resolve().parent / "bank"


class BankFileError(ValueError):
    """A bank file does not have the expected shape."""


@dataclass(frozen=True)
class LoadResult:
    topics: int
    created: int
    unchanged: int


def read_bank_file(path: Path) -> dict:
    """Parse and validate one bank file; raise BankFileError naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BankFileError(f"{path.name}: {exc}") from exc
    for field in ("slug", "name", "questions"):
        if not data.get(field):
            raise BankFileError(f"{path.name}: missing '{field}'")
    keys, texts = set(), set()
    for index, question in enumerate(data["questions"], start=1):
        where = f"{path.name} question {index}"
        if question.get("difficulty") not in Difficulty.values:
            raise BankFileError(f"{where}: difficulty must be one of {Difficulty.values}")
        if not str(question.get("text", "")).strip():
            raise BankFileError(f"{where}: empty text")
        points = question.get("key_points")
        if not isinstance(points, list) or not 3 <= len(points) <= 6:
            raise BankFileError(f"{where}: needs 3 to 6 key points")
        if not str(question.get("outline", "")).strip():
            raise BankFileError(f"{where}: empty outline")
        key, text = question.get("key"), question["text"].strip().casefold()
        if not key or key in keys or text in texts:
            raise BankFileError(f"{where}: missing or repeated key or text")
        keys.add(key)
        texts.add(text)
    return data


def load_bank(directory: Path = BANK_DIR) -> LoadResult:
    """Create the topics and questions the database does not have yet."""
    files = sorted(directory.glob("*.json"))
    parsed = [read_bank_file(path) for path in files]  # validate all before writing any
    created = unchanged = 0
    with transaction.atomic():
        for data in parsed:
            topic, _ = Topic.objects.get_or_create(
                slug=data["slug"],
                defaults={
                    "name": data["name"],
                    "description": data.get("description", ""),
                    "order": data.get("order", 0),
                },
            )
            existing = set(
                Question.objects.filter(bank_key__startswith=f"{data['slug']}-").values_list(
                    "bank_key", flat=True
                )
            )
            # A generated question with the same wording already sits in the pool: keep that one.
            wordings = set(topic.questions.values_list("fingerprint", flat=True))
            new = [
                Question(
                    topic=topic,
                    bank_key=item["key"],
                    difficulty=item["difficulty"],
                    text=item["text"].strip(),
                    key_points=[point.strip() for point in item["key_points"]],
                    outline=item["outline"].strip(),
                    source=Question.Source.BANK,
                )
                for item in data["questions"]
                if item["key"] not in existing
                and question_fingerprint(item["text"]) not in wordings
            ]
            for question in new:
                question.save()
            created += len(new)
            unchanged += len(data["questions"]) - len(new)
    return LoadResult(topics=len(parsed), created=created, unchanged=unchanged)
