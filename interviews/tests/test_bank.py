import json

import pytest
from django.core.management import call_command

from interviews.bank import BANK_DIR, BankFileError, bank_file_read, bank_load
from interviews.models import Question, Topic

EXPECTED_TOPICS = {
    "reactjs", "javascript", "typescript", "python", "django",
    "sql", "system-design", "algorithms", "http-apis", "git",
}  # fmt: skip
FOLLOW_UPS = sum(len(bank_file_read(path=path).follow_ups) for path in BANK_DIR.glob("*.json"))
CODING_PROBLEMS = 36


@pytest.mark.parametrize("path", sorted(BANK_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_bank_file_is_complete(path):
    questions = bank_file_read(path=path).questions
    assert len(questions) >= 20
    assert {q.spec.difficulty for q in questions} == {"easy", "medium", "hard"}
    for question in questions:
        assert 3 <= len(question.spec.key_points) <= 6
        assert question.spec.outline.strip()


def test_migrate_loaded_the_ten_topics(db):
    assert set(Topic.objects.filter(kind="questions").values_list("slug", flat=True)) == (
        EXPECTED_TOPICS
    )
    assert Question.objects.filter(source="bank", follows=None, kind="text").count() == 240
    # The coding problems sit in coding pools of their own (interviews/tests/test_coding.py).
    assert Question.objects.filter(source="bank", kind="code").count() == CODING_PROBLEMS
    # Every bank question has 1 to 3 written follow-ups, outside the pool.
    follow_ups = Question.objects.filter(source="bank", topic__kind="questions").exclude(
        follows=None
    )
    assert follow_ups.count() == FOLLOW_UPS
    assert not Question.objects.filter(
        source="bank", kind="text", follows=None, follow_ups=None
    ).exists()


def test_loading_again_adds_nothing_and_keeps_staff_edits(db):
    question = Question.objects.get(bank_key="reactjs-001")
    question.text = "A staff-edited question?"
    question.save()
    result = bank_load()
    assert (result.created, result.unchanged) == (0, 240 + FOLLOW_UPS + CODING_PROBLEMS)
    question.refresh_from_db()
    assert question.text == "A staff-edited question?"


def test_a_deleted_bank_question_comes_back_with_its_follow_ups(db, capsys):
    follow_ups = set(
        Question.objects.filter(follows__bank_key="git-003").values_list("bank_key", flat=True)
    )
    assert follow_ups
    Question.objects.filter(follows__bank_key="git-003").delete()
    Question.objects.filter(bank_key="git-003").delete()
    call_command("load_question_bank")
    assert f"{1 + len(follow_ups)} questions added" in capsys.readouterr().out
    parent = Question.objects.get(bank_key="git-003")
    assert set(parent.follow_ups.values_list("bank_key", flat=True)) == follow_ups


def test_every_follow_up_probes_its_question(db):
    for follow_up in Question.objects.exclude(follows=None).select_related("follows")[:600]:
        assert follow_up.bank_key.startswith(f"{follow_up.follows.bank_key}.f")
        assert follow_up.difficulty == follow_up.follows.difficulty
        assert follow_up.topic_id == follow_up.follows.topic_id
        assert follow_up.probes
        assert all(0 <= i < len(follow_up.follows.key_points) for i in follow_up.probes)


def test_a_broken_follow_up_file_is_refused_with_its_name(tmp_path, db):
    bank = {
        "slug": "x",
        "name": "X",
        "questions": [
            {
                "key": "x-1",
                "difficulty": "easy",
                "text": "What is a database index?",
                "key_points": ["a", "b", "c"],
                "outline": "o",
            }
        ],
    }
    (tmp_path / "x.json").write_text(json.dumps(bank))
    (tmp_path / "follow_ups").mkdir()
    follow_up = {"text": "Why?", "key_points": ["a", "b", "c"], "outline": "o", "probes": [5]}
    (tmp_path / "follow_ups" / "x.json").write_text(
        json.dumps({"topic": "x", "follow_ups": {"x-1": [follow_up]}})
    )
    with pytest.raises(BankFileError, match=r"follow_ups/x.json x-1.f1: 'probes'"):
        bank_load(directory=tmp_path)
    assert not Topic.objects.filter(slug="x").exists()


def test_a_broken_bank_file_is_refused_with_its_name(tmp_path, db):
    (tmp_path / "broken.json").write_text(
        json.dumps(
            {
                "slug": "x",
                "name": "X",
                "questions": [
                    {
                        "key": "x-1",
                        "difficulty": "extreme",
                        "text": "Q?",
                        "key_points": ["a", "b", "c"],
                        "outline": "o",
                    }
                ],
            }
        )
    )
    with pytest.raises(BankFileError, match=r"broken.json question 1: difficulty"):
        bank_load(directory=tmp_path)
    assert not Topic.objects.filter(slug="x").exists()


def test_staff_cannot_give_two_questions_of_a_topic_the_same_wording(client, db):
    from accounts.models import User

    client.force_login(User.objects.create_superuser(email="s@example.com", password="x"))
    first, second = Question.objects.filter(topic__slug="git").order_by("pk")[:2]
    response = client.post(
        f"/admin/interviews/question/{second.pk}/change/",
        {
            "topic": second.topic_id,
            "difficulty": second.difficulty,
            "text": first.text.upper(),
            "key_points": json.dumps(second.key_points),
            "outline": second.outline,
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "already has a question with this wording" in response.content.decode()
    second.refresh_from_db()
    assert second.text != first.text.upper()


def test_staff_cannot_save_a_question_the_spec_refuses(client, db):
    from accounts.models import User

    client.force_login(User.objects.create_superuser(email="s@example.com", password="x"))
    question = Question.objects.filter(topic__slug="git").order_by("pk").first()
    response = client.post(
        f"/admin/interviews/question/{question.pk}/change/",
        {
            "topic": question.topic_id,
            "difficulty": question.difficulty,
            "text": question.text,
            "key_points": json.dumps(["only", "two"]),
            "outline": question.outline,
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "should have at least 3 items" in response.content.decode()
    question.refresh_from_db()
    assert len(question.key_points) >= 3
