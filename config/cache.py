"""The shared cache (Redis): its client made once per process, not once per request.

Django keeps a cache object per request context (its cache handler is context-local), and its
Redis cache builds each one a client of its own: under the ASGI server, where every request
runs in a context of its own, every request that touches the cache (the session of every
logged-in page, django-allauth's rate limits) paid for a new client, whose driver information
reads the redis package's metadata from disk (about 0.4 ms of CPU), and a new connection pool,
so a new TCP connection to Redis; and every cache operation made a new redis-py client object.
`RedisCache` is Django's, with the client (and so its connection pools, which redis-py makes
thread-safe and fork-safe) shared by every cache object of the process that has the same
servers and options, and one redis-py client per pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

_clients: dict[tuple[Any, ...], RedisCacheClient] = {}
_clients_lock = threading.Lock()


class RedisCacheClient(DjangoRedisCacheClient):
    """Django's client, with one redis-py client per connection pool (Django makes a new one,
    options parsed anew, for every cache operation; a redis-py client is thread-safe)."""

    # Django's (not in its type stubs).
    _client: Any
    _get_connection_pool: Callable[[bool], Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    """django.core.cache.backends.redis.RedisCache, one client per process."""

    # Set by Django's __init__ (not in its type stubs).
    _servers: list[str]
    _options: dict[str, Any]

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = RedisCacheClient(self._servers, **self._options)
        return client
