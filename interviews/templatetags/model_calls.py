from django import template

from interviews.spend import model_call_count_get

register = template.Library()


@register.inclusion_tag("admin/model_calls.html")
def model_calls() -> dict[str, int | bool]:
    """Today's model calls against the daily budget, for the staff admin's index."""
    calls, budget = model_call_count_get()
    return {"calls": calls, "budget": budget, "spent": budget > 0 and calls >= budget}
