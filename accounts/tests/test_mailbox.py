import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.mailbox import mailbox_digest, mailbox_normalize


@pytest.mark.parametrize(
    ("email", "mailbox"),
    [
        ("Alice@Example.com", "alice@example.com"),
        ("alice+mockroom@example.com", "alice@example.com"),
        ("alice+a+b@example.com", "alice@example.com"),
        ("a.lice@example.com", "a.lice@example.com"),  # dots matter outside Gmail
        ("A.Lice+x@Gmail.com", "alice@gmail.com"),
        ("a.l.i.c.e@googlemail.com", "alice@gmail.com"),
        ('"odd@local"@example.com', '"odd@local"@example.com'),
    ],
)
def test_one_mailbox_however_it_is_written(email, mailbox):
    assert mailbox_normalize(email) == mailbox


def test_not_an_address_is_refused():
    with pytest.raises(ValueError, match="Not an email address"):
        mailbox_normalize("no-at-sign")


local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@given(local=local, tag=local, dots=st.lists(st.integers(0, 11), max_size=4), upper=st.booleans())
def test_gmail_variants_share_one_digest(local, tag, dots, upper):
    variant = local
    for position in sorted(set(dots), reverse=True):
        variant = variant[:position] + "." + variant[position:]
    variant = f"{variant}+{tag}@{'googlemail' if upper else 'gmail'}.com"
    if upper:
        variant = variant.upper()
    assert mailbox_digest(variant) == mailbox_digest(f"{local}@gmail.com")


@given(a=local, b=local)
def test_different_mailboxes_differ(a, b):
    assert (mailbox_digest(f"{a}@example.com") == mailbox_digest(f"{b}@example.com")) == (a == b)
