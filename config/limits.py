"""Rate and concurrency limits in the shared cache (Redis in production, local memory otherwise).

Rates are written as django-allauth writes its ACCOUNT_RATE_LIMITS: "20/m/user,300/m/ip" is at
most 20 requests a minute per user and 300 a minute per client address. A period is s, m, h or
d, optionally with a multiplier ("5m"). The parsing is our own: allauth's rate-limit module is
internal to allauth, and its public wrapper says it is to be deprecated.

Each rate is a fixed window: a counter per key and per window, counted with INCR and given its
time to live when created (atomic in Redis and in local memory), so any number of processes
sharing Redis count together. A refusal says exactly when its window ends (`Limited.retry_after`).

`in_flight` bounds the calls one key (a user) has running at once: a slot taken before the
call and given back after it. Each slot is a key of its own with its own deadline (its time to
live, set when it is taken and never extended), so a process killed mid-call blocks its slot
until that deadline at the latest, however often the candidate tries meanwhile.

The counters live in Redis (REDIS_URL), reached through redis-py's asyncio client: one round
trip a check and no thread hop under the ASGI server. Without Redis they live in this process's
memory.

A cache that fails does not refuse anyone: the limits are a brake on abuse, and the money is
guarded by the ledger and the daily model budget, which live in the database.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache

import redis.asyncio as aioredis
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEYS = ("user", "ip")
NOT_CHARGED = "You were not charged."


@dataclass(frozen=True)
class Rate:
    amount: int  # requests allowed in a window
    period: int  # the window's length, in seconds
    per: str  # "user" or "ip"

    def __str__(self) -> str:
        return f"{self.amount}/{self.period}s/{self.per}"


class Limited(Exception):
    """A request refused by a limit: a 429 with Retry-After and this message."""

    def __init__(self, retry_after: int, message: str) -> None:
        self.retry_after = max(1, int(retry_after))
        self.message = message
        super().__init__(message)


def parse_period(text: str) -> int:
    """A period in seconds: m is 60, 5m is 300, 2h is 7200; ValueError for anything else."""
    unit, multiplier = text[-1:], text[:-1]
    if unit not in PERIODS or not (multiplier == "" or multiplier.isdigit()):
        raise ValueError(f"bad period {text!r}")
    seconds = PERIODS[unit] * int(multiplier or 1)
    if seconds <= 0:
        raise ValueError(f"bad period {text!r}")
    return seconds


def parse_rates(
    text: str, *, setting: str = "a rate", keys: Iterable[str] = KEYS
) -> tuple[Rate, ...]:
    """Parse "20/m/user,300/m/ip" (allauth's syntax; a rate without a key is per address).

    Raises ImproperlyConfigured naming the setting and the part that is wrong.
    """
    keys = tuple(keys)
    rates = []
    for part in (text or "").split(","):
        part = part.strip()
        fields = part.split("/")
        if len(fields) == 2:
            fields.append("ip")
        try:
            if len(fields) != 3 or fields[2] not in keys or not fields[0].isdigit():
                raise ValueError(part)
            rate = Rate(amount=int(fields[0]), period=parse_period(fields[1]), per=fields[2])
            if rate.amount < 1:
                raise ValueError(part)
        except ValueError:
            raise ImproperlyConfigured(
                f"{setting}={text!r}: {part!r} is not a rate. Write amount/period/key, several "
                f"separated by commas, e.g. '20/m/user,300/m/ip': amount at least 1, period s, "
                f"m, h or d with an optional multiplier (5m), key {' or '.join(keys)}. "
                "RATE_LIMITS=false turns the rate limits off."
            ) from None
        rates.append(rate)
    return tuple(rates)


@lru_cache(maxsize=64)
def _rates(text: str) -> tuple[Rate, ...]:
    return parse_rates(text)


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind our TLS proxy (BEHIND_TLS_PROXY) the last
    X-Forwarded-For entry, the one that proxy appended (earlier entries are whatever the client
    sent). An IPv6 address counts as its /64: one host usually holds a whole /64."""
    address = request.META.get("REMOTE_ADDR", "")
    if getattr(settings, "BEHIND_TLS_PROXY", False):
        forwarded = request.headers.get("X-Forwarded-For", "")
        if hop := forwarded.split(",")[-1].strip():
            address = hop
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address or "unknown"
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def in_words(seconds: int) -> str:
    """40 -> "40 seconds", 300 -> "5 minutes", 5400 -> "2 hours" (rounded up)."""
    if seconds <= 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds <= 90 * 60:
        minutes = math.ceil(seconds / 60)
        return f"{minutes} minutes"
    hours = math.ceil(seconds / 3600)
    return f"{hours} hours"


def refusal(what: str, retry_after: int) -> Limited:
    """The refusal every limit gives: what was refused, when to try again, nothing charged."""
    retry_after = max(1, int(retry_after))
    return Limited(retry_after, f"{what}: try again in {in_words(retry_after)}. {NOT_CHARGED}")


def _now() -> float:
    return time.time()


def _refused(*, rate: bool) -> None:
    """Count a refusal (mockroom_refusals). config.metrics is imported here, not above: the
    settings import this module before reading .env, and prometheus_client must not start
    before PROMETHEUS_MULTIPROC_DIR is known."""
    from config.metrics import Refusal, refusal_count

    refusal_count(Refusal.RATE if rate else Refusal.IN_FLIGHT)


# --- Where the counters live ---------------------------------------------------------------------
#
# With REDIS_URL: Redis itself, through redis-py's asyncio client (one per event loop), so that a
# limit costs one round trip and no thread hop. Without: this process's memory (Django's local
# memory cache), called directly: it does no I/O, so it needs no thread either.


class Counters:
    """The three atomic operations the limits need."""

    async def count(self, keys: list[tuple[str, int]]) -> list[int]:
        """Add one to each counter (key, time to live), creating it with its time to live when
        it does not exist; return the new values."""
        raise NotImplementedError

    async def take(self, key: str, token: str, ttl: int) -> bool:
        """Set `key` to `token` for `ttl` seconds unless it exists; whether it was set."""
        raise NotImplementedError

    async def give_back(self, key: str, token: str) -> None:
        """Delete `key` if it still holds `token` (not a later holder's slot)."""
        raise NotImplementedError


class LocalCounters(Counters):
    """This process's memory: each process counts alone (the deploy check warns)."""

    @property
    def cache(self) -> BaseCache:
        return caches["default"]

    async def count(self, keys: list[tuple[str, int]]) -> list[int]:
        counts = []
        for key, ttl in keys:
            try:
                counts.append(self.cache.incr(key))
            except ValueError:  # no such key (new, or just expired)
                counts.append(1 if self.cache.add(key, 1, ttl) else self.cache.incr(key))
        return counts

    async def take(self, key: str, token: str, ttl: int) -> bool:
        return self.cache.add(key, token, ttl)

    async def give_back(self, key: str, token: str) -> None:
        if self.cache.get(key) == token:  # one thread at a time runs this loop's code
            self.cache.delete(key)


# Delete a slot only while it is still ours: atomic in Redis.
GIVE_BACK = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


class RedisCounters(Counters):
    """Counters every process shares, in Redis. One client per event loop (an asyncio client's
    connections belong to the loop that opened them)."""

    prefix = "mockroom:"

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            # A Redis that does not answer must not hold requests up: the limits then let
            # requests through (see the module's doc).
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
            self.clients[loop] = client
        return client

    async def count(self, keys: list[tuple[str, int]]) -> list[int]:
        async with self.client().pipeline(transaction=False) as pipe:
            for key, ttl in keys:
                pipe.incr(self.prefix + key)
                pipe.expire(self.prefix + key, ttl, nx=True)
            replies = await pipe.execute()
        return [int(count) for count in replies[::2]]

    async def take(self, key: str, token: str, ttl: int) -> bool:
        return bool(await self.client().set(self.prefix + key, token, ex=ttl, nx=True))

    async def give_back(self, key: str, token: str) -> None:
        await self.client().eval(GIVE_BACK, 1, self.prefix + key, token)  # type: ignore[misc]


_counters: dict[str, Counters] = {}


def counters() -> Counters:
    """The counters for this process's settings (REDIS_URL), made once."""
    url = settings.REDIS_URL
    if url not in _counters:
        _counters[url] = RedisCounters(url) if url else LocalCounters()
    return _counters[url]


async def arate_limit(request: HttpRequest, *, action: str, rates: str, what: str) -> None:
    """Count this request against each rate of `rates` (a setting's text), or raise Limited
    with the wait until the latest window that refused it ends.

    Per user when the request has an authenticated user, per client address always. Nothing
    when RATE_LIMITS is false.
    """
    if not settings.RATE_LIMITS_ENABLED:
        return
    user = getattr(request, "user", None)
    idents = {"ip": client_ip(request)}
    if user is not None and user.is_authenticated:
        idents["user"] = str(user.pk)
    now = _now()
    windows = []  # (rate, seconds until its window ends, key)
    for rate in _rates(rates):
        ident = idents.get(rate.per)
        if ident is None:
            continue
        window = int(now // rate.period)
        left = (window + 1) * rate.period - now
        windows.append((rate, left, f"limit:{action}:{rate.per}:{ident}:{rate.period}:{window}"))
    try:
        counts = await counters().count([(key, math.ceil(left) + 1) for _, left, key in windows])
    except Exception:  # the store is down: let the request through (see the module's doc)
        logger.exception("rate limit %s not checked: the cache failed", action)
        return
    wait = max(
        (math.ceil(left) for (rate, left, _), count in zip(windows, counts, strict=True)
         if count > rate.amount),
        default=0,
    )  # fmt: skip
    if wait:
        _refused(rate=True)
        raise refusal(what, wait)


@asynccontextmanager
async def in_flight(
    key: str, *, limit: int, ttl: int, what: str, retry_after: int = 5
) -> AsyncIterator[None]:
    """Hold one of `limit` slots of `key` for the body, or raise Limited at once (no queue).

    `limit` 0 means no limit. Each slot is a key of its own that lives `ttl` seconds from the
    moment it was taken: set `ttl` to the longest the body may run, so a slot whose process was
    killed in the body frees itself on its own deadline, however often its holder retries
    meanwhile (a refused attempt writes nothing).
    """
    if limit <= 0:
        yield
        return
    store = counters()
    token = uuid.uuid4().hex
    slot = None
    try:
        for index in range(limit):
            if await store.take(f"inflight:{key}:{index}", token, ttl):
                slot = f"inflight:{key}:{index}"
                break
    except Exception:  # the store is down: let the call through (see the module's doc)
        logger.exception("in-flight limit %s not checked: the cache failed", key)
        yield
        return
    if slot is None:
        _refused(rate=False)
        raise refusal(what, retry_after)
    try:
        yield
    finally:
        try:
            await store.give_back(slot, token)
        except Exception:
            logger.exception("in-flight limit %s: could not give the slot back", key)
