from django import template

from interviews.spend import model_calls_today

register = template.Library()


@register.inclusion_tag("admin/model_calls.html")
def model_calls() -> dict:
    """Today's model calls against the daily budget, for the staff admin's index."""
    calls, budget = model_calls_today()
    return {"calls": calls, "budget": budget, "spent": budget > 0 and calls >= budget}
