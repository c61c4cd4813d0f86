from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _load_question_bank(
    sender: AppConfig, *, using: str, verbosity: int = 1, **kwargs: object
) -> None:
    from interviews.bank import bank_load

    result = bank_load()
    if verbosity >= 1 and result.created:
        print(f"  Loaded the question bank: {result.created} questions in {result.topics} topics.")


class InterviewsConfig(AppConfig):
    name = "interviews"
    verbose_name = "Interviews"

    def ready(self) -> None:
        from interviews import (
            checks,  # noqa: F401  (registers the system checks)
            receipts,  # noqa: F401  (describes its purchases on receipts)
        )

        post_migrate.connect(_load_question_bank, sender=self, dispatch_uid="load_question_bank")
