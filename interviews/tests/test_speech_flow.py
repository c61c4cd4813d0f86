"""Spoken answers over HTTP: record, then transcribe (a task on the "speech" queue, here run
directly), then correct, then submit. Free; the audio is deleted; one in flight per candidate;
bad uploads refused with a message (413 past the size cap, 422 not audio, silent, too long);
a failed transcription keeps nothing and says so. The audio is made at test time."""

import io
import math
import struct
import uuid
import wave

import pytest
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from config.testing import badge
from interviews import services
from interviews.models import Answer, Recording, ServedQuestion
from interviews.speech.engines import engine_reset
from interviews.tests.fake_openai import status, transcript
from ledger.selectors import account_problem_list

HTMX = {"HTTP_HX_REQUEST": "true"}
RATE = 16_000


def speech_like_wav(segments: list[tuple[str, float]]) -> bytes:
    """A 16 kHz mono WAV of ("tone" | "silence", seconds) segments: a voiced-like tone (a
    220 Hz fundamental with harmonics) or silence."""
    frames = bytearray()
    for kind, seconds in segments:
        for n in range(int(seconds * RATE)):
            value = 0.0
            if kind == "tone":
                t = n / RATE
                value = sum(0.25 / k * math.sin(2 * math.pi * 220 * k * t) for k in (1, 2, 3))
            frames += struct.pack("<h", int(value * 20000))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(bytes(frames))
    return buffer.getvalue()


ANSWER = speech_like_wav([("silence", 0.5), ("tone", 2.0), ("silence", 2.5), ("tone", 1.5)])
SPOKEN = "Um, so Reddis keeps the data in memory, uh, and writes an append only file."


@pytest.fixture
def voice(settings, fake_transcriber):
    """Transcription through the fake OpenAI-compatible server, the engine rebuilt for it."""
    engine_reset()
    yield fake_transcriber
    engine_reset()


@pytest.fixture
def served(client, session, settings):
    settings.QUESTION_SOURCE = "bank"
    client.force_login(session.user)
    url = reverse("interviews:question_next", kwargs={"session_id": session.pk})
    assert client.post(url, {"request_id": uuid.uuid4().hex}, **HTMX).status_code == 200
    return ServedQuestion.objects.get(session=session)


def upload(client, served, data: bytes, name: str = "answer.webm"):
    url = reverse(
        "interviews:recording",
        kwargs={"session_id": served.session_id, "position": served.position},
    )
    audio = io.BytesIO(data)
    audio.name = name
    return client.post(url, {"audio": audio}, **HTMX)


def test_record_transcribe_correct_and_submit_costs_nothing(
    client, served, voice, django_capture_on_commit_callbacks
):
    voice.enqueue(transcript(SPOKEN))
    with django_capture_on_commit_callbacks(execute=True):  # the task is queued on commit
        response = upload(client, served, ANSWER)
    assert response.status_code == 202
    assert "Transcribing your recording" in response.content.decode()
    recording = Recording.objects.get(served=served)
    assert recording.status == Recording.Status.PENDING
    assert recording.container == "wav"
    assert DBTaskResult.objects.filter(task_path__endswith="recording_transcribe").exists()

    assert services.recording_transcribe(recording_id=recording.pk).startswith("transcribed")
    recording.refresh_from_db()
    assert recording.status == Recording.Status.DONE
    assert recording.audio is None  # deleted once transcribed
    assert recording.transcript == SPOKEN
    assert recording.delivery["pause_count"] == 1
    assert 2.3 <= recording.delivery["longest_pause_seconds"] <= 2.7
    assert recording.delivery["filler_count"] >= 2
    fields = voice.received_transcriptions[-1]
    assert fields["model"] == "gpt-transcribe"
    assert served.question.key_points[0] not in fields["prompt"]  # never the grader's answer

    poll = client.get(
        reverse(
            "interviews:recording_status",
            kwargs={
                "session_id": served.session_id,
                "position": served.position,
                "recording_id": recording.pk,
            },
        )
    ).content.decode()
    assert f'data-recording-id="{recording.pk}"' in poll
    assert "Reddis keeps the data in memory" in poll

    corrected = SPOKEN.replace("Reddis", "Redis")
    answer_url = reverse(
        "interviews:answer", kwargs={"session_id": served.session_id, "position": 1}
    )
    page = client.post(answer_url, {"text": corrected, "recording": recording.pk}, **HTMX)
    assert page.status_code == 200
    html = page.content.decode()
    assert "How you spoke" in html
    assert "(approximate)" in html
    answer = Answer.objects.get(served=served)
    assert answer.recording_id == recording.pk
    assert 0 < answer.transcript_changed < 0.1
    assert badge(client.get(reverse("interviews:dashboard")).content.decode()) == 2  # 3 - 1
    assert account_problem_list() == []


@pytest.mark.parametrize(
    ("data", "status_code", "message"),
    [
        (b"hello, this is not audio at all", 422, "This file is not audio we can read"),
        (speech_like_wav([("silence", 2.0)]), 422, "We could not hear anything"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 200, 422, "This file is not audio we can read"),
    ],
)
def test_a_bad_upload_is_refused_with_a_message_and_nothing_kept(
    client, served, voice, data, status_code, message
):
    response = upload(client, served, data)
    assert response.status_code == status_code
    assert message in response.content.decode()
    assert 'role="alert"' in response.content.decode()
    assert not Recording.objects.exists()


def test_too_long_and_too_large_are_refused(client, served, voice, settings):
    settings.TRANSCRIBE_MAX_SECONDS = 2
    response = upload(client, served, ANSWER)
    assert response.status_code == 422
    assert "longer than" in response.content.decode()
    settings.TRANSCRIBE_MAX_SECONDS = 300
    settings.RECORDING_MAX_BYTES = 10_000
    response = upload(client, served, ANSWER)
    assert response.status_code == 413
    assert "larger than" in response.content.decode()
    assert not Recording.objects.exists()


def test_one_recording_in_flight_per_candidate(client, served, voice):
    assert upload(client, served, ANSWER).status_code == 202
    second = upload(client, served, ANSWER)
    assert second.status_code == 429
    assert "still being transcribed" in second.content.decode()
    assert Recording.objects.count() == 1


def test_a_failed_transcription_keeps_nothing_and_says_so(client, served, voice):
    voice.enqueue(status(500), status(500), status(500))
    assert upload(client, served, ANSWER).status_code == 202
    recording = Recording.objects.get()
    assert services.recording_transcribe(recording_id=recording.pk).startswith("failed")
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED
    assert recording.audio is None
    assert "your typed text is untouched" in recording.error
    # The candidate can record again at once.
    voice.enqueue(transcript(SPOKEN))
    assert upload(client, served, ANSWER).status_code == 202


def test_with_voice_off_there_is_no_record_button_and_uploads_are_503(client, served, settings):
    settings.TRANSCRIBE_BACKEND = "off"
    engine_reset()
    try:
        page = client.get(served.session.get_absolute_url()).content.decode()
        assert "data-recorder" not in page
        assert upload(client, served, ANSWER).status_code == 503
    finally:
        engine_reset()
