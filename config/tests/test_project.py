import subprocess
import sys

from django.urls import reverse


def test_healthz_answers_when_the_database_does(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_pages_carry_a_strict_csp_with_a_nonce(client, make_user):
    client.force_login(make_user())
    response = client.get(reverse("interviews:dashboard"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp
    assert "unsafe-inline" not in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    html = response.content.decode()
    assert f'nonce="{nonce}"' in html  # htmx and our script both carry it
    assert "cdn" not in html.lower()
    assert "/static/django_htmx/htmx-2" in html


def test_the_badge_is_on_every_logged_in_page(client, make_user):
    client.force_login(make_user(tokens=4))
    for url in ["/interviews/", "/tokens/", "/tokens/what-costs-a-token/", "/accounts/profile/"]:
        html = client.get(url).content.decode()
        assert 'id="token-balance" aria-live="polite"' in html, url
        assert "4 tokens" in html, url


def test_secret_key_is_required_unless_debug():
    code = "import django; django.setup()"
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_favicon_ico_redirects_to_the_icon(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("img/favicon.svg")
