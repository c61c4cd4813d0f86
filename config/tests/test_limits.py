"""The limiter (config/limits.py): rates in allauth's syntax, fixed windows with an exact
Retry-After, per user and per address, the in-flight counter, the switch, the 429 page, the
deploy check, and one run against a real Redis."""

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from config import limits
from config.checks import check_shared_cache
from config.limits import Limited, Rate, arate_limit, client_ip, in_flight, parse_rates
from config.testing import redis_url
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
    assert cache.get("inflight:user:1:0") is None


def test_in_flight_zero_is_no_limit():
    assert async_to_sync(hold_two)(0) == ["first", "second", "other user", "after"]


def test_each_of_several_slots_is_taken_once():
    async def three_at_once() -> list[str]:
        events = []
        async with in_flight("user:1", limit=2, ttl=60, what="Busy"):
            async with in_flight("user:1", limit=2, ttl=60, what="Busy"):
                try:
                    async with in_flight("user:1", limit=2, ttl=60, what="Busy"):
                        events.append("third")
                except Limited:
                    events.append("third refused")
                events.append("two held")
            async with in_flight("user:1", limit=2, ttl=60, what="Busy"):
                events.append("a freed slot taken again")
        return events

    assert async_to_sync(three_at_once)() == [
        "third refused",
        "two held",
        "a freed slot taken again",
    ]


async def take_and_die(key: str, ttl: int) -> None:
    """What a process killed mid-call leaves behind: a slot taken and never given back."""
    assert await limits.counters().take(f"inflight:{key}:0", "a dead process", ttl)


def asked_every(key: str, *, seconds: float, every: float, ttl: int) -> list[float]:
    """Ask for the slot every `every` seconds for at most `seconds`, as a candidate who keeps
    clicking would; the moments (since the first ask) of each refusal, then the allowed one."""
    started = time.monotonic()
    refusals: list[float] = []

    async def ask() -> bool:
        try:
            async with in_flight(key, limit=1, ttl=ttl, what="Busy"):
                return True
        except Limited:
            return False

    while time.monotonic() - started < seconds:
        if async_to_sync(ask)():
            return [*refusals, time.monotonic() - started]
        refusals.append(time.monotonic() - started)
        time.sleep(every)
    raise AssertionError(f"still refused after {seconds} s of asking every {every} s")


def test_a_slot_left_by_a_dead_call_frees_itself_on_its_own_deadline_however_often_asked():
    """The slot's time to live starts when it is taken and no refusal extends it: a candidate
    who keeps asking gets their next call within the slot's deadline (the lock-out of the last
    round: one counter whose time to live every attempt renewed)."""
    async_to_sync(take_and_die)("user:7", 2)
    moments = asked_every("user:7", seconds=10, every=0.2, ttl=2)
    assert len(moments) > 3  # refused meanwhile: the slot was held
    assert moments[-1] < 2 + 1  # allowed once its own 2 s were over


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


def test_the_limits_count_in_a_real_redis(clock, settings):
    with redis_url() as url:
        settings.REDIS_URL = url
        assert type(limits.counters()).__name__ == "RedisCounters"
        # A key of our own, not another run's: the user id is unique to this test run.
        request = request_from(user_id=int(time.time_ns() % 10**12))
        hit(request, "2/m/user")
        hit(request, "2/m/user")
        with pytest.raises(Limited) as refused:
            hit(request, "2/m/user")
        assert refused.value.retry_after == 40

        key = f"user:{request.user.pk}"
        events = []

        async def nested():
            async with in_flight(key, limit=1, ttl=30, what="Busy"):
                events.append(await ttl_of(url, f"inflight:{key}:0"))
                try:
                    async with in_flight(key, limit=1, ttl=30, what="Busy"):
                        events.append("second")
                except Limited:
                    events.append("refused")
            events.append(await ttl_of(url, f"inflight:{key}:0"))

        async_to_sync(nested)()
        assert 0 < events[0] <= 30  # the slot's own deadline
        assert events[1:] == ["refused", -2]  # given back: no such key


async def ttl_of(url: str, key: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        return await client.ttl(f"mockroom:{key}")
    finally:
        await client.aclose()


HOLD_A_SLOT_AND_WAIT = """
import asyncio, sys, django
django.setup()
from config.limits import in_flight

async def main():
    async with in_flight(sys.argv[1], limit=1, ttl=int(sys.argv[2]), what="Busy"):
        print("taken", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_a_process_killed_holding_a_slot_in_redis_locks_nobody_out(settings):
    """A process SIGKILLed while it holds a candidate's slot in a real Redis: the candidate,
    asking every 0.2 s meanwhile, is allowed again within the slot's own deadline."""
    with redis_url() as url:
        settings.REDIS_URL = url
        key = f"user:{time.time_ns()}"
        env = {**os.environ, "REDIS_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings"}
        env.setdefault("SECRET_KEY", "test-only")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_A_SLOT_AND_WAIT, key, "3"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "taken"
            holder.kill()
            holder.wait(timeout=10)
            moments = asked_every(key, seconds=15, every=0.2, ttl=3)
        finally:
            holder.kill()
        assert len(moments) > 3  # the dead process's slot was held meanwhile
        assert moments[-1] < 3 + 1  # and freed on its deadline, however often they asked
