"""How the candidate spoke: speaking time, time to first word, long pauses, pace, filler words.

Computed from the audio and the raw transcript only, whatever the transcription engine, never
from timestamps a model may or may not give (DESIGN.md §10). The audio side is WebRTC's
voice-activity detector (py-webrtcvad, a Gaussian-mixture model of speech over six frequency
bands) on 30 ms frames, refined with the frames' loudness:

1. The detector marks each frame voiced or not (mode 2 of 0-3: aggressive about calling
   background noise non-speech, still keeping soft speech).
2. The ends of each voiced run must also be louder than the background (6 dB above the median
   loudness of the unvoiced frames, and at least -60 dBFS) and not 30 dB below the run's loudest
   frames. The detector holds on for 60-150 ms after speech stops (its "hangover", which would
   shorten every pause), a lossy codec rings on for as long after a sound stops, and the
   detector may take the first frames of a noisy recording for speech while it learns the
   noise: such frames are dropped from the ends of each voiced run.
3. Gaps under 0.3 s between voiced runs are bridged (the stops and breaths inside a phrase), and
   what remains shorter than 0.1 s (a click, a cough's onset) is dropped. What is left are the
   speech segments.

Speaking time is the segments' total; time to first word is the first segment's start; a pause
is a gap of 2 s or more between two segments (the silence before the first word and after the
last is not a pause); words per minute are the transcript's words (fillers included) over the
speaking minutes. Every number is approximate, and says so (`LABEL`).

Filler words are counted in the raw transcript (before the candidate corrects it), case-
insensitively on word boundaries, from the list in `FILLERS`. A word's function cannot be read
from its spelling, so this too is approximate: "like" counts only before a comma or "you know";
"kind of" / "sort of" not after a determiner ("what kind of index"); "you know" not after "do",
"did", "don't", "if", "as" ("do you know Redis?"). Whisper-style engines drop "um" and "uh" unless
prompted with a disfluent opener: the engines' prompt carries one (issue 18).
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TypedDict

import webrtcvad  # type: ignore[import-untyped]  # the package ships no type information

FRAME_MS: Final = 30
VAD_MODE: Final = 2
VAD_SAMPLE_RATES: Final = frozenset({8_000, 16_000, 32_000, 48_000})
# A voiced frame is kept only this many times louder (RMS) than the background (x2 = 6 dB) ...
BACKGROUND_FACTOR: Final = 2.0
# ... and than this (-60 dBFS), whatever the background; but the bar never rises above -40 dBFS,
# so a noisy room cannot hide a voice.
LOUDNESS_FLOOR: Final = 33.0
LOUDNESS_CEILING: Final = 328.0
# The background is the median loudness of at most this many unvoiced frames, evenly spread.
BACKGROUND_SAMPLE_FRAMES: Final = 200
# A run's ends are kept down to 30 dB under its loudest frame, which is looked for among at most
# this many of its frames, evenly spread (loudness costs a pass over the samples in Python).
RUN_RELATIVE_FLOOR: Final = 10 ** (-30 / 20)
RUN_SAMPLE_FRAMES: Final = 8
BRIDGE_GAP_SECONDS: Final = 0.3
MIN_SEGMENT_SECONDS: Final = 0.1
PAUSE_SECONDS: Final = 2.0
# Under a second of speech gives no meaningful pace.
MIN_PACE_SECONDS: Final = 1.0

LABEL: Final = (
    "Approximate: speaking time and pauses are measured on the recording by a voice-activity "
    "detector, words per minute and filler words are counted in the automatic transcript."
)
# Stored with the numbers, so that numbers measured by another method can be told apart.
METHOD: Final = "webrtcvad-mode2-30ms+loudness, bridge<0.3s, pause>=2s, fillers-v1"

# Words after which "kind of" / "sort of" is a noun phrase, not a hedge.
_DETERMINERS: Final = (
    "a", "an", "the", "this", "that", "these", "those", "what", "which", "any", "some", "every",
    "each", "one", "no", "same", "other", "another", "my", "your", "our", "their", "its", "his",
    "her", "new", "right", "different", "whatever",
)  # fmt: skip


def _not_after(*words: str) -> str:
    # One fixed-width lookbehind per word (Python's lookbehinds cannot vary in width).
    return "".join(rf"(?<!\b{re.escape(word)} )" for word in words)


# The fillers counted: a canonical name and what it matches in the lowercased transcript, its
# whitespace collapsed to single spaces. Elongations count as the word (umm, uhh, hmmm, erm).
FILLERS: Final[dict[str, str]] = {
    "um": r"u+h?m+",
    "uh": r"u+h+",
    "er": r"e+r+m*",
    "ah": r"a+h+",
    "hmm": r"h+m+",
    "like": r"like(?= ?,| you know\b)",
    "you know": _not_after("do", "did", "don't", "if", "as") + r"you know",
    "i mean": r"i mean",
    "sort of": _not_after(*_DETERMINERS) + r"(?:sort of|sorta)",
    "kind of": _not_after(*_DETERMINERS) + r"(?:kind of|kinda)",
    "basically": r"basically",
    "actually": r"actually",
}
_FILLER_PATTERNS: Final = {
    name: re.compile(rf"(?<![\w']){pattern}(?![\w'])") for name, pattern in FILLERS.items()
}
# A word: a whitespace-separated token with at least one letter or digit ("write-ahead", "O(n)",
# "3.5" and "don't" are one word each; a lone dash is none).
_WORD: Final = re.compile(r"\S*[^\W_]\S*")


class DeliveryDict(TypedDict):
    """`Delivery.as_dict()`: the JSON stored with the answer."""

    duration_seconds: float
    speaking_seconds: float
    time_to_first_word_seconds: float | None
    pause_count: int
    longest_pause_seconds: float | None
    word_count: int
    words_per_minute: float | None
    filler_count: int
    fillers: dict[str, int]
    label: str
    method: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """How the candidate spoke. Seconds to 0.01 s (frames are 30 ms), words per minute to 0.1."""

    duration_seconds: float  # the whole recording
    speaking_seconds: float  # voiced, short gaps bridged
    time_to_first_word_seconds: float | None  # None: no speech found
    pause_count: int  # gaps of PAUSE_SECONDS or more between speech
    longest_pause_seconds: float | None  # None: no such pause
    word_count: int  # in the raw transcript
    words_per_minute: float | None  # None: under MIN_PACE_SECONDS of speech
    filler_count: int
    fillers: dict[str, int] = field(default_factory=dict)  # canonical name -> count, found only
    label: str = LABEL
    method: str = METHOD

    def as_dict(self) -> DeliveryDict:
        return DeliveryDict(
            duration_seconds=self.duration_seconds,
            speaking_seconds=self.speaking_seconds,
            time_to_first_word_seconds=self.time_to_first_word_seconds,
            pause_count=self.pause_count,
            longest_pause_seconds=self.longest_pause_seconds,
            word_count=self.word_count,
            words_per_minute=self.words_per_minute,
            filler_count=self.filler_count,
            fillers=dict(self.fillers),
            label=self.label,
            method=self.method,
        )


def delivery_measure(
    *, samples: Sequence[int], sample_rate: int = 16_000, transcript: str
) -> Delivery:
    """The delivery numbers of a mono signed 16-bit recording and its raw transcript.

    `samples` is `Normalised.samples` (an `array("h")`), or any sequence of ints in the int16
    range; `sample_rate` one the detector takes: 8, 16, 32 or 48 kHz.
    """
    if sample_rate not in VAD_SAMPLE_RATES:
        raise ValueError(f"the voice-activity detector takes 8, 16, 32 or 48 kHz: {sample_rate}")
    pcm = samples if isinstance(samples, array) and samples.typecode == "h" else array("h", samples)
    frame_length = sample_rate * FRAME_MS // 1000
    frame_seconds = frame_length / sample_rate
    segments = _speech_segments(pcm, sample_rate, frame_length)

    speaking = sum(end - start for start, end in segments) * frame_seconds
    gaps = [
        (start - previous_end) * frame_seconds
        for (_, previous_end), (start, _) in itertools.pairwise(segments)
    ]
    pauses = [gap for gap in gaps if gap >= PAUSE_SECONDS - 1e-9]
    words = len(_WORD.findall(transcript))
    fillers = filler_counts(transcript)
    return Delivery(
        duration_seconds=round(len(pcm) / sample_rate, 2),
        speaking_seconds=round(speaking, 2),
        time_to_first_word_seconds=round(segments[0][0] * frame_seconds, 2) if segments else None,
        pause_count=len(pauses),
        longest_pause_seconds=round(max(pauses), 2) if pauses else None,
        word_count=words,
        words_per_minute=round(words / speaking * 60, 1) if speaking >= MIN_PACE_SECONDS else None,
        filler_count=sum(fillers.values()),
        fillers=fillers,
    )


def filler_counts(transcript: str) -> dict[str, int]:
    """How often each filler of `FILLERS` occurs in `transcript`; the ones found only."""
    text = " ".join(transcript.lower().replace("\u2019", "'").split())
    counts = {name: len(pattern.findall(text)) for name, pattern in _FILLER_PATTERNS.items()}
    return {name: count for name, count in counts.items() if count}


def _speech_segments(pcm: array[int], sample_rate: int, frame_length: int) -> list[tuple[int, int]]:
    """The speech segments, as [start, end) frame indices (the module's docstring, steps 1-3)."""
    frame_count = len(pcm) // frame_length
    vad = webrtcvad.Vad(VAD_MODE)
    view = memoryview(pcm).cast("B")
    step = frame_length * pcm.itemsize
    voiced = [
        bool(vad.is_speech(view[index * step : (index + 1) * step], sample_rate))
        for index in range(frame_count)
    ]

    def loudness(index: int) -> float:
        frame = pcm[index * frame_length : (index + 1) * frame_length]
        return math.sqrt(math.sumprod(frame, frame) / frame_length)

    # Step 1: the detector's voiced runs.
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index, flag in enumerate([*voiced, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index))
            start = None

    # Step 2: the ends of each run that are no louder than the background are not speech.
    unvoiced = [index for index, flag in enumerate(voiced) if not flag]
    picked = unvoiced[:: max(1, len(unvoiced) // BACKGROUND_SAMPLE_FRAMES)]
    background = statistics.median(loudness(index) for index in picked) if picked else 0.0
    bar = min(max(background * BACKGROUND_FACTOR, LOUDNESS_FLOOR), LOUDNESS_CEILING)
    trimmed: list[tuple[int, int]] = []
    for first, last in runs:
        spread = range(first, last, max(1, (last - first) // RUN_SAMPLE_FRAMES))
        run_bar = max(bar, max(loudness(index) for index in spread) * RUN_RELATIVE_FLOOR)
        while first < last and loudness(first) < run_bar:
            first += 1
        while last > first and loudness(last - 1) < run_bar:
            last -= 1
        if first < last:
            trimmed.append((first, last))

    # Step 3: bridge short gaps, drop what is still too short to be a word.
    frame_seconds = frame_length / sample_rate
    bridged: list[tuple[int, int]] = []
    for first, last in trimmed:
        if bridged and (first - bridged[-1][1]) * frame_seconds < BRIDGE_GAP_SECONDS - 1e-9:
            bridged[-1] = (bridged[-1][0], last)
        else:
            bridged.append((first, last))
    return [
        (first, last)
        for first, last in bridged
        if (last - first) * frame_seconds >= MIN_SEGMENT_SECONDS - 1e-9
    ]
