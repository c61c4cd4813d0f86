"""The token packs on sale: defined here, overridden by the TOKEN_PACKS setting.

A pack is a code, a number of tokens and a price in the currency's minor units (cents). A
purchase keeps a snapshot of its pack, so changing the packs never changes what was sold.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from django.conf import settings

# Stripe's smallest charge is about 50 cents in most currencies.
MIN_AMOUNT = 50
MAX_TOKENS = 100_000

DEFAULT_PACKS: tuple[dict[str, object], ...] = (
    {"code": "starter", "name": "Starter", "tokens": 20, "amount": 500, "currency": "usd"},
    {"code": "standard", "name": "Standard", "tokens": 60, "amount": 1200, "currency": "usd"},
    {"code": "intensive", "name": "Intensive", "tokens": 150, "amount": 2500, "currency": "usd"},
)

_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_CURRENCY = re.compile(r"^[a-z]{3}$")


class InvalidPacks(ValueError):
    """TOKEN_PACKS does not describe packs: the message says which and why."""


@dataclass(frozen=True)
class Pack:
    code: str
    name: str
    tokens: int
    amount: int  # minor units
    currency: str  # ISO 4217, lower case as Stripe writes it

    @property
    def price(self) -> str:
        """The price as people read it: 12.00 USD."""
        from payments.models import money

        return money(self.amount, self.currency)


def _whole(value: object, *, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def pack_parse(item: object, *, where: str) -> Pack:
    if not isinstance(item, dict):
        raise InvalidPacks(f"{where}: a pack is an object with code, tokens, amount, currency.")
    unknown = set(item) - {"code", "name", "tokens", "amount", "currency"}
    if unknown:
        raise InvalidPacks(f"{where}: unknown key(s) {', '.join(sorted(unknown))}.")
    code, tokens, amount = item.get("code"), item.get("tokens"), item.get("amount")
    currency = item.get("currency", "usd")
    if not isinstance(code, str) or not _CODE.match(code):
        raise InvalidPacks(
            f"{where}: code {code!r} must be 1-32 lower-case letters, digits, - or _."
        )
    if not _whole(tokens, low=1, high=MAX_TOKENS):
        raise InvalidPacks(f"{where}: tokens {tokens!r} must be a whole number, 1-{MAX_TOKENS}.")
    if not _whole(amount, low=MIN_AMOUNT, high=99_999_999):
        raise InvalidPacks(
            f"{where}: amount {amount!r} must be a whole number of minor units (cents), "
            f"at least {MIN_AMOUNT}."
        )
    if not isinstance(currency, str) or not _CURRENCY.match(currency.lower()):
        raise InvalidPacks(f"{where}: currency {currency!r} must be a three-letter ISO code.")
    name = item.get("name") or code.replace("-", " ").replace("_", " ").capitalize()
    if not isinstance(name, str) or len(name) > 60:
        raise InvalidPacks(f"{where}: name must be text of at most 60 characters.")
    assert isinstance(tokens, int)  # checked above
    assert isinstance(amount, int)
    return Pack(code=code, name=name, tokens=tokens, amount=amount, currency=currency.lower())


def packs_parse(items: object) -> tuple[Pack, ...]:
    if not isinstance(items, list | tuple) or not items:
        raise InvalidPacks("TOKEN_PACKS must be a non-empty JSON list of packs.")
    packs = tuple(
        pack_parse(item, where=f"TOKEN_PACKS[{index}]") for index, item in enumerate(items)
    )
    codes = [pack.code for pack in packs]
    if len(set(codes)) != len(codes):
        raise InvalidPacks("TOKEN_PACKS: two packs share a code.")
    return packs


@functools.cache
def _packs(configured: str) -> tuple[Pack, ...]:
    """Parsed once per value of the setting (keyed by its JSON text: tests override it)."""
    return packs_parse(json.loads(configured))


def pack_list() -> tuple[Pack, ...]:
    """The packs on sale, in the order shown. Raises InvalidPacks (a system check says so at
    start) when TOKEN_PACKS is not valid."""
    configured = settings.TOKEN_PACKS
    return _packs(json.dumps(list(DEFAULT_PACKS) if configured is None else configured))


def pack_get(code: str) -> Pack | None:
    return next((pack for pack in pack_list() if pack.code == code), None)
