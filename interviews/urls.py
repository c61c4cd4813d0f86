from django.urls import path

from interviews import views

app_name = "interviews"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("start/", views.session_start, name="start"),
    path("<uuid:session_id>/", views.session_detail, name="session"),
    path("<uuid:session_id>/questions/", views.question_next, name="question_next"),
    path(
        "<uuid:session_id>/questions/<int:position>/answer/",
        views.answer_submit,
        name="answer",
    ),
    path(
        "<uuid:session_id>/questions/<int:position>/recording/",
        views.recording_upload,
        name="recording",
    ),
    path(
        "<uuid:session_id>/questions/<int:position>/recording/<int:recording_id>/",
        views.recording_status,
        name="recording_status",
    ),
    path(
        "<uuid:session_id>/questions/<int:position>/run/",
        views.code_run,
        name="code_run",
    ),
    path(
        "<uuid:session_id>/questions/<int:position>/follow-up/",
        views.follow_up_next,
        name="follow_up",
    ),
    path("<uuid:session_id>/end/", views.session_end, name="end"),
    path("<uuid:session_id>/report/", views.session_report, name="report"),
    path("<uuid:session_id>/report.md", views.session_report_markdown, name="report_markdown"),
]
