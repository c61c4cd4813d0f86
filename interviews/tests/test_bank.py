import json

import pytest
from django.core.management import call_command

from interviews.bank import BANK_DIR, BankFileError, bank_file_read, bank_load
from interviews.models import Question, Topic

EXPECTED_TOPICS = {
    "reactjs", "javascript", "typescript", "python", "django",
    "sql", "system-design", "algorithms", "http-apis", "git",
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(BANK_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_bank_file_is_complete(path):
    questions = bank_file_read(path=path).questions
    assert len(questions) >= 20
    assert {q.spec.difficulty for q in questions} == {"easy", "medium", "hard"}
    for question in questions:
        assert 3 <= len(question.spec.key_points) <= 6
        assert question.spec.outline.strip()


def test_migrate_loaded_the_ten_topics(db):
    assert set(Topic.objects.values_list("slug", flat=True)) == EXPECTED_TOPICS
    assert Question.objects.filter(source="bank").count() == 240


def test_loading_again_adds_nothing_and_keeps_staff_edits(db):
    question = Question.objects.get(bank_key="reactjs-001")
    question.text = "A staff-edited question?"
    question.save()
    result = bank_load()
    assert (result.created, result.unchanged) == (0, 240)
    question.refresh_from_db()
    assert question.text == "A staff-edited question?"


def test_a_deleted_bank_question_comes_back(db, capsys):
    Question.objects.filter(bank_key="git-003").delete()
    call_command("load_question_bank")
    assert "1 questions added" in capsys.readouterr().out
    assert Question.objects.filter(bank_key="git-003").exists()


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
