import pytest

from interviews.models import Topic
from interviews.services import session_start


@pytest.fixture
def topic(db) -> Topic:
    """The ReactJS topic of the built-in bank (loaded by migrate)."""
    return Topic.objects.get(slug="reactjs")


@pytest.fixture
def candidate(make_user):
    return make_user(tokens=3, email="cand@example.com")


@pytest.fixture
def session(candidate, topic):
    return session_start(user=candidate, topic=topic, difficulty="easy")
