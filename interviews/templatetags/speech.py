"""What the pages say about voice answers: whether they are on, and who transcribes."""

from typing import Any

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def voice_info() -> dict[str, Any]:
    """The configured transcription engine (made once per process): on or off, its provider
    for the privacy note, and the longest recording in practice."""
    from interviews.speech.engines import engine_get

    engine = engine_get()
    return {
        "available": engine.available,
        "provider": engine.provider,
        "reason": engine.reason,
        "max_seconds": settings.TRANSCRIBE_MAX_SECONDS,
    }
