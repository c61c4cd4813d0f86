from django.conf import settings
from django.http import HttpRequest


def payments(request: HttpRequest) -> dict[str, bool]:
    """`payments_enabled`: whether the pages offer to buy tokens (a provider is configured)."""
    return {"payments_enabled": settings.PAYMENTS_PROVIDER != "none"}
