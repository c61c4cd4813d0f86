"""`manage.py ledger_fingerprint`: what a backup of the ledger must bring back (ledger.fingerprint).

deploy/backup.sh saves it next to the dump, taken in the dump's own snapshot (--snapshot);
deploy/restore-drill.sh runs it on the restored copy with --compare.
"""

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.fingerprint import (
    LedgerFingerprint,
    fingerprint_differences,
    ledger_fingerprint_get,
)


class Command(BaseCommand):
    help = (
        "Print the ledger's fingerprint as JSON: per account its balance, held tokens, version, "
        "entry count, last entry version and a SHA-256 of its entries. With --compare FILE, "
        "exit 0 when this database matches that fingerprint, else list each difference and "
        "exit 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", metavar="FILE", help="write the JSON here, not stdout")
        parser.add_argument(
            "--snapshot",
            metavar="ID",
            help="read in this exported PostgreSQL snapshot (pg_export_snapshot(), as pg_dump "
            "--snapshot), so the fingerprint describes exactly what the dump holds",
        )
        parser.add_argument(
            "--compare", metavar="FILE", help="compare with this fingerprint instead of printing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            found = ledger_fingerprint_get(snapshot=options["snapshot"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        if options["compare"]:
            self._compare(found, Path(options["compare"]))
            return
        text = json.dumps(found.as_json(), indent=1, sort_keys=True) + "\n"
        if options["output"]:
            Path(options["output"]).write_text(text)
            self.stderr.write(
                f"Fingerprint of {len(found.accounts)} account(s) and {found.entries} entries "
                f"written to {options['output']}."
            )
        else:
            sys.stdout.write(text)

    def _compare(self, found: LedgerFingerprint, path: Path) -> None:
        try:
            expected = LedgerFingerprint.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CommandError(f"Cannot read the fingerprint {path}: {error}") from None
        differences = fingerprint_differences(expected=expected, found=found)
        if not differences:
            self.stdout.write(
                f"OK: {len(found.accounts)} account(s) and {found.entries} entries match {path}."
            )
            return
        for line in differences:
            self.stderr.write(line)
        self.stderr.write(
            f"FAILED: this database does not match {path} ({len(differences)} difference(s); "
            f"{expected.entries} entries expected, {found.entries} found)."
        )
        raise SystemExit(1)
