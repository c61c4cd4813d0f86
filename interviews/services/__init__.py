"""The candidate's actions, by capability (services write, selectors read, views delegate):

    sessions    start and end an interview session
    purchase    the next question and a follow-up, each paid as received (the token promise)
    answers     an answer in practice, with its feedback (free)
    coding      a coding problem's examples run, and a solution graded by its hidden tests
    mock        a mock interview's answers and its report
    prepared    the next question, prepared in the background (PREFETCH)
    speech      a spoken answer's recording, transcribed in the background (free)
    base        what they share: a database step that hands its connection back, and the
                candidate's in-flight model calls

Callers import from here; the modules import only downwards (base and prepared at the bottom).
"""

from interviews.services.answers import MAX_FEEDBACK_REQUESTS, aanswer_submit, answer_submit
from interviews.services.base import (
    IN_FLIGHT_REFUSED,
    IN_FLIGHT_RETRY_AFTER,
    db_step,
    model_call_slot,
)
from interviews.services.coding import (
    CodeNotRun,
    acode_answer_submit,
    acode_grade,
    acode_run,
)
from interviews.services.mock import MockAnswer, areport_build, mock_answer_submit, report_build
from interviews.services.prepared import prepared_discard, question_prepare
from interviews.services.purchase import (
    MAX_POOL_COLLISIONS,
    NextQuestion,
    afollow_up_next,
    aquestion_next,
    follow_up_next,
    question_next,
)
from interviews.services.sessions import session_end, session_start
from interviews.services.speech import (
    TRANSCRIPTION_FAILED,
    RecordingRefused,
    recording_for_answer,
    recording_start,
    recording_transcribe,
    transcript_changed,
)

__all__ = [
    "IN_FLIGHT_REFUSED",
    "IN_FLIGHT_RETRY_AFTER",
    "MAX_FEEDBACK_REQUESTS",
    "MAX_POOL_COLLISIONS",
    "TRANSCRIPTION_FAILED",
    "CodeNotRun",
    "MockAnswer",
    "NextQuestion",
    "RecordingRefused",
    "aanswer_submit",
    "acode_answer_submit",
    "acode_grade",
    "acode_run",
    "afollow_up_next",
    "answer_submit",
    "aquestion_next",
    "areport_build",
    "db_step",
    "follow_up_next",
    "mock_answer_submit",
    "model_call_slot",
    "prepared_discard",
    "question_next",
    "question_prepare",
    "recording_for_answer",
    "recording_start",
    "recording_transcribe",
    "report_build",
    "session_end",
    "session_start",
    "transcript_changed",
]
