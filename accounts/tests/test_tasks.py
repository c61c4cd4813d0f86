from datetime import timedelta

from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.tasks import sessions_clear_expired


def session(*, expires_in: timedelta) -> str:
    store = SessionStore()
    store["who"] = "candidate"
    store.create()
    Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now() + expires_in)
    assert store.session_key
    return store.session_key


def test_sessions_clear_expired_deletes_only_expired_sessions(db):
    expired = session(expires_in=-timedelta(seconds=1))
    live = session(expires_in=timedelta(days=1))

    sessions_clear_expired.call()

    assert list(Session.objects.values_list("pk", flat=True)) == [live]
    assert not Session.objects.filter(pk=expired).exists()
