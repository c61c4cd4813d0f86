import re

from django.db import migrations, models


def pool_resets_from_the_ledger(apps, schema_editor):
    """Pool resets used to be zero-delta ledger entries written with the debit; they are now
    recorded on the served question. Copy the old ones over (the entries stay: history)."""
    LedgerEntry = apps.get_model("ledger", "LedgerEntry")
    ServedQuestion = apps.get_model("interviews", "ServedQuestion")
    for entry in LedgerEntry.objects.filter(kind="pool_reset").iterator():
        served = ServedQuestion.objects.filter(
            hold__account_id=entry.account_id, hold__request_id=entry.request_id
        ).first()
        if served is None:
            continue
        size = re.search(r"all (\d+) questions seen", entry.reason)
        served.pool_reset_size = int(size[1]) if size else 0
        served.save(update_fields=["pool_reset_size"])


class Migration(migrations.Migration):
    dependencies = [
        ("interviews", "0005_model_call_day"),
        ("ledger", "0004_entry_kind_note"),
    ]

    operations = [
        migrations.AddField(
            model_name="servedquestion",
            name="pool_reset_size",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(pool_resets_from_the_ledger, migrations.RunPython.noop),
    ]
