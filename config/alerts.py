"""Alerts to staff: an email to every active staff member with an address (the people who can
act, and who exist as soon as there is an admin; ADMINS need not be configured)."""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

logger = logging.getLogger(__name__)


def staff_email(*, subject: str, body: str) -> int:
    """Email `body` to active staff; returns how many were emailed (0: nobody to tell, logged)."""
    recipients = list(
        get_user_model()
        .objects.filter(Q(is_staff=True) | Q(is_superuser=True), is_active=True)
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
    )
    if not recipients:
        logger.warning("no active staff member to email the alert to: %s", subject)
        return 0
    send_mail(
        subject=f"[Mockroom] {subject}",
        message=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )
    return len(recipients)
