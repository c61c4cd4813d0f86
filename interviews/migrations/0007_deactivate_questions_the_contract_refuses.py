from django.db import migrations


def deactivate_refused(apps, schema_editor):
    """Pool questions written before QuestionSpec (generated ones could have 1, 2, 7 or 8 key
    points) would be refused each time the bank source drew them, and the request would end in a
    503 after its free retries. Take them out of the pool; staff see them, inactive, in the admin
    and can fix and reactivate them (the admin's form checks the contract)."""
    from interviews.exceptions import GenerationFailed
    from interviews.spec import QuestionSpec

    Question = apps.get_model("interviews", "Question")
    refused = []
    for question in Question.objects.filter(is_active=True).iterator():
        try:
            QuestionSpec.parse(
                {
                    "text": question.text,
                    "key_points": question.key_points,
                    "outline": question.outline,
                    "difficulty": question.difficulty,
                }
            )
        except GenerationFailed:
            refused.append(question.pk)
    Question.objects.filter(pk__in=refused).update(is_active=False)


class Migration(migrations.Migration):
    dependencies = [("interviews", "0006_served_question_pool_reset_size")]

    operations = [migrations.RunPython(deactivate_refused, migrations.RunPython.noop)]
