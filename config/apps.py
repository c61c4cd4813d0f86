from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project itself as an app: what belongs to no product app (the background work's
    schedule and its bookkeeping)."""

    name = "config"
    verbose_name = "Background work"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the system checks)
        from config.tracing import tracing_init_for_command

        # A task worker (`manage.py db_worker`) traces its tasks when OTEL_EXPORTER_OTLP_ENDPOINT
        # is set, from before its first query; any other command never does.
        tracing_init_for_command()
