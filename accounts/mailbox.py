"""One mailbox, however its address is written: what the welcome grant is counted against.

`Alice.Smith+mockroom@Gmail.com`, `alicesmith@googlemail.com` and `ALICESMITH@gmail.com` all
reach one inbox, so they get one welcome grant between them. Case never matters (in practice no
provider treats the local part as case-sensitive); a `+tag` is dropped for every domain (the
providers that support sub-addressing use `+`); dots are dropped only where the provider
ignores them (Gmail).
"""

import hashlib

# Providers that deliver `a.b@` and `ab@` to the same inbox, and the domain they alias to.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_normalize(email: str) -> str:
    """The canonical form of the mailbox an address delivers to."""
    local, _, domain = email.strip().lower().rpartition("@")
    if not local:
        raise ValueError(f"Not an email address: {email!r}")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        domain = DOTLESS_DOMAINS[domain]
        local = local.replace(".", "")
    return f"{local}@{domain}"


def mailbox_digest(email: str) -> str:
    """What is stored: a SHA-256 of the canonical mailbox, so a deleted account's address is
    not kept, yet a new account on the same mailbox is still recognised."""
    return hashlib.sha256(mailbox_normalize(email).encode()).hexdigest()
