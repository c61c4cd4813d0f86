"""The built-in question bank: JSON files in interviews/bank/, loaded into the database.

`migrate` loads it (a post_migrate handler), and so does `manage.py load_question_bank`.
Loading is idempotent: a question is keyed by its `key`; staff edits in the admin are kept.

`bank/follow_ups/<topic>.json` holds each question's written follow-ups (1 to 3): questions an
interviewer asks after the answer, each probing some of the question's key points (`probes`,
indexes into them), so that the follow-up asked is one about what the answer missed. They are
loaded as questions that follow their parent (`Question.follows`), never drawn from the pool.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from interviews.coding.bank import code_bank_load
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
class BankFollowUp:
    parent_key: str
    key: str  # "<parent key>.f<n>"
    spec: QuestionSpec  # at the parent's difficulty
    probes: tuple[int, ...]  # the parent's key points it digs into


@dataclass(frozen=True)
class BankFile:
    slug: str
    name: str
    description: str
    order: int
    questions: list[BankQuestion]
    follow_ups: list[BankFollowUp]


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
    slug = str(data["slug"])
    follow_ups_path = path.parent / "follow_ups" / path.name
    return BankFile(
        slug=slug,
        name=str(data["name"]),
        description=str(data.get("description", "")),
        order=int(data.get("order", 0)),
        questions=questions,
        follow_ups=(
            _follow_ups_read(path=follow_ups_path, slug=slug, questions=questions, texts=texts)
            if follow_ups_path.exists()
            else []
        ),
    )


def _follow_ups_read(
    *, path: Path, slug: str, questions: list[BankQuestion], texts: set[str]
) -> list[BankFollowUp]:
    """A topic's follow-ups file: {"topic": slug, "follow_ups": {question key: [follow-up]}},
    each follow-up {"text", "key_points", "outline", "probes"} and a valid QuestionSpec at its
    question's difficulty, with a wording no other question of the topic has."""
    where = f"follow_ups/{path.name}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BankFileError(f"{where}: {exc}") from exc
    if not isinstance(data, dict) or data.get("topic") != slug:
        raise BankFileError(f"{where}: not the follow-ups of topic '{slug}'")
    items = data.get("follow_ups")
    if not isinstance(items, dict):
        raise BankFileError(f"{where}: 'follow_ups' is not an object")
    parents = {question.key: question for question in questions}
    follow_ups: list[BankFollowUp] = []
    for parent_key, entries in items.items():
        parent = parents.get(parent_key)
        if parent is None:
            raise BankFileError(f"{where}: no question '{parent_key}' in the topic")
        if not isinstance(entries, list) or not 1 <= len(entries) <= 3:
            raise BankFileError(f"{where} {parent_key}: 1 to 3 follow-ups expected")
        for number, entry in enumerate(entries, start=1):
            key = f"{parent_key}.f{number}"
            if not isinstance(entry, dict):
                raise BankFileError(f"{where} {key}: not a JSON object")
            fields = dict(entry)
            probes = fields.pop("probes", None)
            fields["difficulty"] = parent.spec.difficulty
            try:
                spec = QuestionSpec.parse(fields)
            except OffSchema as exc:
                raise BankFileError(f"{where} {key}: {exc.detail}") from None
            if (
                not isinstance(probes, list)
                or not probes
                or not all(
                    isinstance(i, int) and 0 <= i < len(parent.spec.key_points) for i in probes
                )
            ):
                raise BankFileError(f"{where} {key}: 'probes' must index the question's key points")
            if spec.text.casefold() in texts:
                raise BankFileError(f"{where} {key}: repeated text")
            texts.add(spec.text.casefold())
            follow_ups.append(
                BankFollowUp(parent_key=parent_key, key=key, spec=spec, probes=tuple(probes))
            )
    return follow_ups


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
            parents = {
                q.bank_key: q
                for q in Question.objects.filter(
                    bank_key__in={f.parent_key for f in bank.follow_ups}
                )
            }
            follow_ups = [
                Question(
                    topic=topic,
                    bank_key=item.key,
                    follows=parents[item.parent_key],
                    probes=list(item.probes),
                    difficulty=item.spec.difficulty,
                    text=item.spec.text,
                    key_points=list(item.spec.key_points),
                    outline=item.spec.outline,
                    source=Question.Source.BANK,
                )
                for item in bank.follow_ups
                if item.key not in existing
                and item.parent_key in parents
                and question_fingerprint(item.spec.text) not in wordings
            ]
            for question in follow_ups:
                question.save()
            created += len(new) + len(follow_ups)
            unchanged += len(bank.questions) + len(bank.follow_ups) - len(new) - len(follow_ups)
        if directory == BANK_DIR:  # the coding problems, in each topic's coding pools
            code_created, code_unchanged = code_bank_load()
            created += code_created
            unchanged += code_unchanged
    return LoadResult(topics=len(parsed), created=created, unchanged=unchanged)
