"""The ledger is a component: it imports nothing from the product above it, which describes its
own purchases on the receipts page through ledger.receipts."""

import ast
from pathlib import Path

from django.urls import reverse

from interviews.models import InterviewSession, Topic
from interviews.services import question_next
from ledger import receipts
from ledger.receipts import ReceiptDetail

LEDGER = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_ledger_imports_nothing_from_interviews():
    offenders = {
        str(path.relative_to(LEDGER)): sorted(
            m for m in imported_modules(path) if "interviews" in m
        )
        for path in LEDGER.rglob("*.py")
        if "tests" not in path.parts
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_a_product_describes_its_receipts(client, make_user, monkeypatch):
    """A describer gets the page's entries once and adds a link and a note to some of them."""
    user = make_user(tokens=2)
    calls = []

    def describe(entries):
        calls.append(len(entries))
        return {
            e.pk: ReceiptDetail(url="/somewhere/", link_text="see it", note="A note.")
            for e in entries
            if e.kind == "grant"
        }

    monkeypatch.setattr(receipts, "_describers", [describe])
    client.force_login(user)
    page = client.get(reverse("ledger:entries")).content.decode()
    assert calls == [1]
    assert '<a href="/somewhere/">see it</a>' in page
    assert "A note." in page


def test_a_receipt_links_to_its_question_and_notes_a_pool_reset(client, make_user):
    topic = Topic.objects.order_by("pk").first()
    user = make_user(tokens=3)
    session = InterviewSession.objects.create(user=user, topic=topic, difficulty="medium")
    served = question_next(session=session, request_id="receipt-1").served
    served.pool_reset_size = 24  # as if it had started a new pass
    served.save(update_fields=["pool_reset_size"])
    client.force_login(user)
    page = client.get(reverse("ledger:entries")).content.decode()
    assert f'href="{served.get_absolute_url()}">see the question</a>' in page
    assert f"{topic.name}: all 24 questions seen; the pool recycles (pass 1)." in page
