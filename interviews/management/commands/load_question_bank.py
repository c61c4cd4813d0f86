from django.core.management.base import BaseCommand, CommandError

from interviews.bank import BankFileError, bank_load


class Command(BaseCommand):
    help = "Load the built-in question bank (migrate does this too). Keeps staff edits."

    def handle(self, *args: object, **options: object) -> None:
        try:
            result = bank_load()
        except BankFileError as exc:
            raise CommandError(f"Question bank not loaded: {exc}") from exc
        self.stdout.write(
            f"Question bank: {result.topics} topics, {result.created} questions added, "
            f"{result.unchanged} already present."
        )
