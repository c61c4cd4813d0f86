import logging

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.mailbox import mailbox_digest
from accounts.models import User, WelcomeGrant
from ledger.models import LedgerEntry, TokenAccount
from ledger.services import account_grant, account_open

logger = logging.getLogger(__name__)

WELCOME_REASON = "Welcome tokens"


def user_signup(*, email: str, password: str, email_verified: bool = True) -> User:
    """A candidate as the web signup leaves them (for scripts and tests; the web's is
    django-allauth's, accounts.signals): the user, their email address, an empty token account,
    and, when the address is verified, the welcome-token decision (welcome_grant_create)."""
    with transaction.atomic(durable=True):
        user = User.objects.create_user(email=email, password=password)
        EmailAddress.objects.create(
            user=user, email=user.email, primary=True, verified=email_verified
        )
        account_open(user=user, welcome_tokens=0)
    if email_verified:
        welcome_grant_create(user=user, email=user.email)
        user.token_account.refresh_from_db()
    return user


def welcome_grant_create(*, user: User, email: str) -> WelcomeGrant:
    """Decide, once per account, whether it gets the welcome tokens: WELCOME_TOKENS when no
    other account has had a grant for this mailbox (accounts.mailbox), else 0. Idempotent: a
    second call (a second verified address, a double click) returns the first decision.

    The decision and the ledger entry commit together. Two accounts on one mailbox verifying at
    the same moment: the database's unique constraint keeps one paid grant, the other gets 0.
    """
    mailbox = mailbox_digest(email)
    tokens = max(settings.WELCOME_TOKENS, 0)
    with transaction.atomic(durable=True):
        # The user's row lock serialises two decisions for one account.
        User.objects.select_for_update().only("pk").get(pk=user.pk)
        try:
            return WelcomeGrant.objects.get(user=user)
        except WelcomeGrant.DoesNotExist:
            pass
        if tokens and not WelcomeGrant.objects.filter(mailbox=mailbox, tokens__gt=0).exists():
            try:
                with transaction.atomic():
                    grant = WelcomeGrant.objects.create(user=user, mailbox=mailbox, tokens=tokens)
            except IntegrityError:
                pass  # another account on this mailbox won the race: this one gets none
            else:
                account = account_open(user=user, welcome_tokens=0)
                account_grant(
                    account=account,
                    amount=tokens,
                    actor=user,
                    source=LedgerEntry.Source.SIGNUP,
                    reason=WELCOME_REASON,
                )
                return grant
        grant = WelcomeGrant.objects.create(user=user, mailbox=mailbox, tokens=0)
    logger.info("welcome tokens: none for user %s, its mailbox already had a grant", user.pk)
    return grant


def user_delete(*, user: User) -> None:
    """Delete a candidate's account and what they wrote (sessions, answers, sign-in data).

    The ledger stays: the token account and its entries are kept without the user, still
    labelled with the email they were written under (ledger history is never rewritten). A
    question in progress is freed by the sweeper like any dead request's; a deleted user's
    balance is never spent again. The welcome-grant record stays too (a digest, not the
    address), so the same mailbox cannot collect the welcome tokens again.
    """
    with transaction.atomic(durable=True):
        TokenAccount.objects.filter(user=user).update(email=user.email)
        user.delete()
