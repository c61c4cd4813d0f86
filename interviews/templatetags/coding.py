"""Template filters for coding problems."""

from django import template

from interviews.execution.compare import display

register = template.Library()


@register.filter
def json_text(value: object) -> str:
    """A JSON value as the page shows it (compact, cut when long); escaped by the template."""
    return display(value)
