"""The limiter (config/limits.py): rates in allauth's syntax, fixed windows with an exact
Retry-After, per user and per address, the in-flight counter, the switch, the 429 page, the
deploy check, and one run against a real Redis."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings

from config import limits
from config.checks import check_shared_cache
from config.limits import Limited, Rate, arate_limit, client_ip, in_flight, parse_rates
from config.views import too_many_requests

ROOT = Path(__file__).resolve().parents[2]
# A moment 20 seconds into a minute (and into no longer window's end).
T0 = 60 * 1_000_000 + 20


def request_from(ip: str = "203.0.113.7", user_id: int | None = 1, **headers: Any):
    request = RequestFactory().post("/", REMOTE_ADDR=ip, **headers)
    # All the limits read of a user: is_authenticated and pk.
    request.user = SimpleNamespace(is_authenticated=user_id is not None, pk=user_id)  # type: ignore[assignment]
    return request


def hit(request, rates: str, action: str = "things") -> None:
    async_to_sync(arate_limit)(request, action=action, rates=rates, what="Too many things")


@pytest.fixture
def clock(monkeypatch) -> SimpleNamespace:
    now = SimpleNamespace(value=float(T0))
    monkeypatch.setattr(limits, "_now", lambda: now.value)
    return now


# --- Parsing ---------------------------------------------------------------------------------


def test_rates_are_written_as_django_allauth_writes_them():
    assert parse_rates("20/m/user,300/m/ip") == (Rate(20, 60, "user"), Rate(300, 60, "ip"))
    assert parse_rates("5/5m/ip, 1/2h/user, 7/s/ip, 100/d/user") == (
        Rate(5, 300, "ip"),
        Rate(1, 7200, "user"),
        Rate(7, 1, "ip"),
        Rate(100, 86400, "user"),
    )
    assert parse_rates("30/m") == (Rate(30, 60, "ip"),)  # no key: per address, as in allauth


@pytest.mark.parametrize(
    "text", ["", "20", "20/m/", "20/x/user", "20/m/key", "0/m/user", "-1/m/ip", "a/m/ip", "5/0m/ip"]
)
def test_a_bad_rate_is_refused_naming_the_setting(text):
    with pytest.raises(ImproperlyConfigured, match=r"RATE_LIMIT_QUESTIONS=.*amount/period/key"):
        parse_rates(text, setting="RATE_LIMIT_QUESTIONS")


def test_a_bad_rate_in_the_environment_stops_the_start():
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "true", "RATE_LIMIT_FEEDBACK": "20/x/user"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: RATE_LIMIT_FEEDBACK='20/x/user'" in result.stderr


# --- Fixed windows -----------------------------------------------------------------------------


def test_a_fixed_window_refuses_past_its_amount_with_the_exact_wait(clock):
    request = request_from()
    hit(request, "2/m/user")
    hit(request, "2/m/user")
    with pytest.raises(Limited) as refused:
        hit(request, "2/m/user")
    assert refused.value.retry_after == 40  # 20 s into the minute
    assert refused.value.message == (
        "Too many things: try again in 40 seconds. You were not charged."
    )
    clock.value += 39.5
    with pytest.raises(Limited) as still:
        hit(request, "2/m/user")
    assert still.value.retry_after == 1
    clock.value += 0.5  # the next window
    hit(request, "2/m/user")


def test_the_wait_is_the_latest_end_among_the_windows_that_refused(clock):
    request = request_from()
    hit(request, "1/m/user,1/h/ip")
    with pytest.raises(Limited) as refused:
        hit(request, "1/m/user,1/h/ip")
    # Both refused: the hour's window ends last (T0 is 20 s into its minute and 2,420 s into
    # its hour).
    assert refused.value.retry_after == 3600 - 2420 == 1180
    assert "try again in 20 minutes" in refused.value.message


def test_users_are_counted_apart_and_an_address_counts_all_its_users(clock):
    per_user = "1/m/user,100/m/ip"
    hit(request_from(user_id=1), per_user)
    with pytest.raises(Limited):
        hit(request_from(user_id=1), per_user)
    hit(request_from(user_id=2), per_user)  # another candidate, same address

    per_ip = "100/m/user,2/m/ip"
    hit(request_from(user_id=3), per_ip, action="other")
    hit(request_from(user_id=4), per_ip, action="other")
    with pytest.raises(Limited):
        hit(request_from(user_id=5), per_ip, action="other")  # a third candidate from there
    hit(request_from(ip="198.51.100.9", user_id=5), per_ip, action="other")  # from elsewhere


def test_actions_are_counted_apart(clock):
    request = request_from()
    hit(request, "1/m/user", action="questions")
    hit(request, "1/m/user", action="feedback")
    with pytest.raises(Limited):
        hit(request, "1/m/user", action="questions")


def test_a_visitor_without_an_account_is_counted_by_address_only(clock):
    anonymous = request_from(user_id=None)
    hit(anonymous, "1/m/user,2/m/ip")
    hit(anonymous, "1/m/user,2/m/ip")
    with pytest.raises(Limited):
        hit(anonymous, "1/m/user,2/m/ip")


def test_rate_limits_false_turns_them_off(clock, settings):
    settings.RATE_LIMITS_ENABLED = False
    for _ in range(5):
        hit(request_from(), "1/m/user,1/m/ip")


# --- The client's address ----------------------------------------------------------------------


def test_the_address_is_remote_addr_unless_behind_our_proxy(settings):
    forwarded = {"HTTP_X_FORWARDED_FOR": "10.9.9.9, 198.51.100.20"}
    settings.BEHIND_TLS_PROXY = False
    assert client_ip(request_from(ip="203.0.113.7", **forwarded)) == "203.0.113.7"
    settings.BEHIND_TLS_PROXY = True
    # The entry our proxy appended; what the client wrote before it is not believed.
    assert client_ip(request_from(ip="10.0.0.2", **forwarded)) == "198.51.100.20"
    assert client_ip(request_from(ip="10.0.0.2")) == "10.0.0.2"


def test_an_ipv6_address_counts_as_its_64(clock):
    assert client_ip(request_from(ip="2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    hit(request_from(ip="2001:db8:1:2::1", user_id=1), "1/m/ip")
    with pytest.raises(Limited):
        hit(request_from(ip="2001:db8:1:2:ffff::9", user_id=2), "1/m/ip")
    hit(request_from(ip="2001:db8:1:3::1", user_id=3), "1/m/ip")


# --- In flight ---------------------------------------------------------------------------------


async def hold_two(limit: int) -> list[str]:
    events = []
    async with in_flight("user:1", limit=limit, ttl=60, what="Busy"):
        events.append("first")
        try:
            async with in_flight("user:1", limit=limit, ttl=60, what="Busy"):
                events.append("second")
        except Limited as exc:
            events.append(f"refused {exc.retry_after}: {exc.message}")
        async with in_flight("user:2", limit=limit, ttl=60, what="Busy"):
            events.append("other user")
    async with in_flight("user:1", limit=limit, ttl=60, what="Busy"):
        events.append("after")
    return events


def test_in_flight_refuses_a_second_call_at_once_and_frees_the_slot_after():
    assert async_to_sync(hold_two)(1) == [
        "first",
        "refused 5: Busy: try again in 5 seconds. You were not charged.",
        "other user",
        "after",
    ]
    assert cache.get("inflight:user:1") == 0


def test_in_flight_zero_is_no_limit():
    assert async_to_sync(hold_two)(0) == ["first", "second", "other user", "after"]


def test_an_in_flight_slot_lives_no_longer_than_its_ttl(monkeypatch):
    """A process killed mid-call never gives its slot back: the counter's time to live does."""
    ttls = []
    real_touch = cache.atouch

    async def recording_touch(key, timeout=None, version=None):
        ttls.append((key, timeout))
        return await real_touch(key, timeout)

    monkeypatch.setattr(cache, "atouch", recording_touch)

    async def take():
        async with in_flight("user:1", limit=1, ttl=169, what="Busy"):
            pass

    async_to_sync(take)()
    assert ttls == [("inflight:user:1", 169)]


# --- The 429 page and the deploy check ---------------------------------------------------------


@pytest.mark.parametrize(
    ("account_limits", "retry_after", "when"),
    [
        ({"signup": "5/m/ip,30/h/ip", "login_failed": "10/m/ip,5/5m/key"}, "3600", "60 minutes"),
        ({"login_failed": "10/m/ip,5/5m/key"}, "300", "5 minutes"),
        (False, "60", "60 seconds"),
    ],
)
def test_the_429_page_with_the_request_alone_as_django_allauth_asks(
    rf, db, settings, account_limits, retry_after, when
):
    settings.ACCOUNT_RATE_LIMITS = account_limits
    request = rf.get("/accounts/signup/")
    request.user = SimpleNamespace(is_authenticated=False)
    response = too_many_requests(request)
    assert response.status_code == 429
    assert response["Retry-After"] == retry_after
    html = response.content.decode()
    assert "<h1>Too many requests</h1>" in html
    assert f"try again in {when}. You were not charged." in html
    assert 'role="alert"' in html
    assert "Back to Mockroom" in html  # the site's page (base.html), not a bare one


def test_handler429_is_the_projects():
    from django.utils.module_loading import import_string

    assert import_string(import_string("config.urls.handler429")) is too_many_requests


def test_the_deploy_check_warns_when_the_limits_are_per_process(settings):
    settings.DEBUG = False
    settings.REDIS_URL = ""
    assert [m.id for m in check_shared_cache()] == ["mockroom.W001"]
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert check_shared_cache() == []
    settings.DEBUG = True
    settings.REDIS_URL = ""
    assert check_shared_cache() == []


# --- A real Redis ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """REDIS_URL when set; else a throwaway redis-server on loopback, stopped afterwards."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no REDIS_URL and no redis-server on PATH (apt-get install redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        command = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_the_limits_count_in_a_real_redis(clock):
    with redis_url() as url:
        redis_cache = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        }
        with override_settings(CACHES=redis_cache):
            # A key of our own, not another run's: the user id is unique to this test run.
            request = request_from(user_id=int(time.time_ns() % 10**12))
            hit(request, "2/m/user")
            hit(request, "2/m/user")
            with pytest.raises(Limited) as refused:
                hit(request, "2/m/user")
            assert refused.value.retry_after == 40
            assert type(cache._cache).__name__ == "RedisCacheClient"

            key = f"user:{request.user.pk}"
            events = []

            async def nested():
                async with in_flight(key, limit=1, ttl=30, what="Busy"):
                    try:
                        async with in_flight(key, limit=1, ttl=30, what="Busy"):
                            events.append("second")
                    except Limited:
                        events.append("refused")

            async_to_sync(nested)()
            assert events == ["refused"]
            assert cache.get(f"inflight:{key}") == 0
            assert (
                0
                < cache._cache.get_client(write=False).ttl(
                    cache.make_and_validate_key(f"inflight:{key}")
                )
                <= 30
            )
            cache.delete_many([f"inflight:{key}"])
