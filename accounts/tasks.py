"""Background work of accounts, run by the task worker (`make worker`) on the schedule in
config/schedule.py.

Sessions live here rather than in the ledger: a session is a signed-in candidate or staff
member, which is this app's business; the ledger only ever sees the user.
"""

from django.core.management import call_command
from django.tasks import task


@task
def sessions_clear_expired() -> None:
    """Delete expired sessions: Django never deletes them by itself, so the table only grows.

    Django's own `clearsessions` does it for whichever SESSION_ENGINE is configured.
    """
    call_command("clearsessions")
