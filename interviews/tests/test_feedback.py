from interviews.feedback import rubric_feedback_get, terms
from interviews.models import Question


def question(points):
    return Question(text="Q?", key_points=points, outline="The outline.")


def test_terms_meet_across_word_forms():
    assert terms("Caching caches") == terms("cache cached")
    assert "the" not in terms("the index")


def test_a_complete_answer_scores_ten():
    q = question(["an index speeds up lookups", "writes get slower with more indexes"])
    answer = (
        "An index speeds up lookups a lot, but writes get slower as you add more indexes "
        "to a table."
    )
    feedback = rubric_feedback_get(question=q, answer=answer)
    assert (feedback.score, feedback.missed) == (10, [])
    assert feedback.outline == "The outline."


def test_an_empty_of_substance_answer_scores_low_and_lists_the_gaps():
    q = question(
        [
            "an index speeds up lookups",
            "writes get slower with more indexes",
            "covering index avoids the heap",
        ]
    )
    feedback = rubric_feedback_get(
        question=q, answer="I am not sure, maybe it depends on the database?"
    )
    assert feedback.score == 0
    assert feedback.missed == q.key_points
    assert feedback.gaps == [f"Missing: {p}" for p in q.key_points]


def test_a_one_liner_is_capped():
    q = question(["index speeds lookups"])
    assert rubric_feedback_get(question=q, answer="index speeds lookups").score == 3
