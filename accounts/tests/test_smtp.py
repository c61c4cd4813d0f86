"""Email goes out over SMTP as EMAIL_URL says: a real SMTP server on loopback (aiosmtpd) receives
the verification email of a signup, and its link verifies the address and grants the tokens."""

import email
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from accounts.models import User

ROOT = Path(__file__).resolve().parents[2]


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[email.message.Message] = []

    def handle_message(self, message: email.message.Message) -> None:
        self.messages.append(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


def body_of(message: email.message.Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_the_verification_email_goes_out_over_smtp(client, db, settings, smtp_server):
    port, inbox = smtp_server
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 10},
        }
    }
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    settings.WELCOME_TOKENS = 7
    password = "Quiet-Harbor-42"
    client.post(
        "/accounts/signup/",
        {"email": "smtp@example.com", "password1": password, "password2": password},
    )
    [message] = inbox.messages
    assert message["To"] == "smtp@example.com"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)", body_of(message))[1]
    assert User.objects.get().token_account.balance == 0
    client.post(link)
    assert User.objects.get().token_account.balance == 7


def test_email_url_configures_the_smtp_connection(smtp_server):
    """The settings read EMAIL_URL (django-environ) into the mailer: a real process sends."""
    port, inbox = smtp_server
    env = {
        **os.environ,
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "DEFAULT_FROM_EMAIL": "team@mockroom.example",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    subprocess.run(
        [sys.executable, "manage.py", "sendtestemail", "staff@mockroom.example"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    [message] = inbox.messages
    assert message["To"] == "staff@mockroom.example"
    assert message["From"] == "team@mockroom.example"


def test_a_mail_server_that_is_down_is_no_server_error(client, db, settings, caplog):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    password = "Quiet-Harbor-42"
    response = client.post(
        "/accounts/signup/",
        {"email": "down@example.com", "password1": password, "password2": password},
        follow=True,
    )
    assert response.status_code == 200
    assert "could not send you an email" in response.content.decode()
    assert User.objects.get().token_account.balance == 0
    assert "email_confirmation_signup not sent to a example.com address" in caplog.text
