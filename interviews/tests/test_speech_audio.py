"""Spoken answers' audio (interviews/speech): sniffing, decoding to 16 kHz mono WAV, the refusals
(not audio, empty, too long, silent), and the delivery numbers (the voice-activity detector's
speaking time, time to first word and pauses; pace and filler words from the transcript).

Every recording is made here, at test time, no binary fixture in the repository: PyAV encodes
synthetic audio into the containers browsers record (WebM/Opus from Chrome and Firefox,
Ogg/Opus, fragmented MP4/AAC from Safari) and a few others; Debian's espeak-ng speaks a technical
answer for a realistic case. "Speech" in the synthetic recordings is a 160 Hz tone with seven
harmonics, a voice's shape: WebRTC's detector learns a steady pure sine as background noise.
espeak-ng must be installed (.ci/ensure-sandbox installs it): elsewhere its tests are skipped
with the reason, with CI=true they fail.
"""

import io
import json
import math
import os
import random
import shutil
import subprocess
import wave
from array import array
from collections.abc import Sequence
from pathlib import Path

import av
import pytest

from interviews.speech import audio
from interviews.speech.audio import (
    DECODE_MARGIN_SECONDS,
    EMPTY_MESSAGE,
    NOT_AUDIO_MESSAGE,
    SILENT_MESSAGE,
    AudioRefused,
    Normalised,
    normalise,
    sniff,
)
from interviews.speech.delivery import LABEL, Delivery, delivery_measure, filler_counts

BROWSER_RATE = 48_000
# The example of the brief: speech 1.0 s, silence 2.5 s, speech 1.5 s, silence 0.4 s, speech
# 1.0 s, between 0.5 s of silence before and 0.6 s after (7.5 s in all).
EXAMPLE = (
    ("silence", 0.5),
    ("speech", 1.0),
    ("silence", 2.5),
    ("speech", 1.5),
    ("silence", 0.4),
    ("speech", 1.0),
    ("silence", 0.6),
)
# What the browsers record, and what else a candidate may upload. Safari's MP4 is fragmented.
FORMATS = {
    "webm": ("webm", "libopus", {"live": "1"}),
    "ogg": ("ogg", "libopus", {}),
    "mp4": ("mp4", "aac", {"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
    "m4a": ("mp4", "aac", {}),
    "matroska": ("matroska", "libopus", {}),
    "wav": ("wav", "pcm_s16le", {}),
    "mp3": ("mp3", "libmp3lame", {}),
}
BROWSER_FORMATS = ("webm", "ogg", "mp4")
SNIFFED = {"m4a": "mp4"}


# --- Making recordings -------------------------------------------------------------------------


def speech_period(rate: int, amplitude: float, f0: int = 160) -> list[float]:
    """One period of a 160 Hz tone with harmonics up to 1.28 kHz (1/k each): a vowel's shape."""
    size = rate // f0  # 160 Hz divides 8, 16, 32 and 48 kHz: the period tiles exactly
    peak = sum(1 / k for k in range(1, 9))
    return [
        amplitude * sum(math.sin(2 * math.pi * k * i / size) / k for k in range(1, 9)) / peak
        for i in range(size)
    ]


def synth(
    parts: Sequence[tuple[str, float]],
    *,
    rate: int = BROWSER_RATE,
    amplitude: float = 0.4,
    noise: float = 0.0,
    seed: int = 18,
) -> array:
    """Speech-like tone and exact silence, in the order given, plus white noise of `noise` peak
    (a fraction of full scale) throughout; int16 samples."""
    period = speech_period(rate, amplitude)
    out: list[float] = []
    for kind, seconds in parts:
        count = round(seconds * rate)
        if kind == "speech":
            out += (period * (count // len(period) + 1))[:count]
        else:
            out += [0.0] * count
    level = round(noise * 32767)
    hiss = random.Random(seed).choices(range(-level, level + 1), k=len(out)) if level else None
    samples = array("h", (round(value * 32767) for value in out))
    if hiss:
        samples = array(
            "h", (max(-32768, min(32767, s + h)) for s, h in zip(samples, hiss, strict=True))
        )
    return samples


def encode(
    samples: array,
    *,
    kind: str = "webm",
    rate: int = BROWSER_RATE,
    channels: int = 1,
    spec: tuple[str, str, dict[str, str]] | None = None,
) -> bytes:
    """`samples` (mono int16 at `rate`) encoded as FORMATS[kind] (or `spec`: a container, a
    codec, the container's options), with `channels` channels."""
    container, codec, options = spec or FORMATS[kind]
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV's FFmpeg has no {codec} encoder")
    layout = "stereo" if channels == 2 else "mono"
    if channels == 2:
        interleaved = array("h", bytes(len(samples) * 4))
        interleaved[0::2] = samples
        interleaved[1::2] = samples
        samples = interleaved
    # Opus takes 48, 24, 16, 12 or 8 kHz: PyAV resamples anything else to 48 kHz on the way in.
    stream_rate = rate if codec != "libopus" or rate in {48_000, 24_000, 16_000} else 48_000
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container, container_options=options) as output:
        stream = output.add_stream(codec, rate=stream_rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        step = 1024 * channels
        for offset in range(0, len(samples), step):
            chunk = samples[offset : offset + step]
            frame = av.AudioFrame(format="s16", layout=layout, samples=len(chunk) // channels)
            frame.planes[0].update(chunk.tobytes())
            frame.sample_rate = rate
            frame.pts = offset // channels
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def espeak(markup: str, folder: Path) -> tuple[array, int]:
    """espeak-ng speaking `markup` (SSML): its int16 samples and their rate (22,050 Hz)."""
    program = shutil.which("espeak-ng")
    if program is None:
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true and espeak-ng is missing (.ci/ensure-sandbox installs it)")
        pytest.skip("espeak-ng is not installed: apt-get install espeak-ng")
    path = folder / "spoken.wav"
    subprocess.run([program, "-m", "-w", str(path), markup], check=True, timeout=60)
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        samples = array("h", reader.readframes(reader.getnframes()))
        return samples, reader.getframerate()


def wav_of(samples: array, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


def refused(data: bytes, *, max_seconds: float = 60) -> AudioRefused:
    with pytest.raises(AudioRefused) as caught:
        normalise(data, max_seconds=max_seconds)
    return caught.value


def measure(parts: Sequence[tuple[str, float]], *, kind: str = "webm", transcript: str = ""):
    recording = normalise(encode(synth(parts, noise=0.002), kind=kind), max_seconds=60)
    return delivery_measure(samples=recording.samples, transcript=transcript)


@pytest.fixture(scope="module")
def example() -> array:
    return synth(EXAMPLE, noise=0.002)


# --- Sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_sniff_names_each_container_from_its_bytes(kind):
    data = encode(synth([("speech", 0.5)]), kind=kind)
    assert sniff(data) == SNIFFED.get(kind, kind)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"Redis is an in-memory data store.\n" * 40, id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), id="png"),
        pytest.param(random.Random(7).randbytes(4096), id="random"),
        pytest.param(b"%PDF-1.7\n" + bytes(100), id="pdf"),
        pytest.param(b"PK\x03\x04" + bytes(100), id="zip"),
        pytest.param(b"<!doctype html><html></html>", id="html"),
        pytest.param(b"\xff\xf1\x50\x80" + bytes(100), id="adts-aac-not-mp3"),
        pytest.param(b"RIFF\x24\x00\x00\x00AVI LIST", id="riff-avi"),
    ],
)
def test_sniff_names_nothing_else(data):
    assert sniff(data) is None


def test_sniff_reads_the_bytes_not_the_name():
    """An upload says what it likes about itself: only the bytes count."""
    assert sniff(b"ID3\x04\x00" + bytes(50)) == "mp3"
    assert sniff(b"\xff\xfb\x90\x64" + bytes(50)) == "mp3"  # an MPEG-1 layer III frame header
    assert sniff(b"\x00\x00\x00\x20ftypM4A " + bytes(50)) == "mp4"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"


# --- Refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"Um, so the cache sits in front of the database.\n" * 40, id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(2000), id="png"),
        pytest.param(random.Random(7).randbytes(20_000), id="random"),
        pytest.param(b"OggS" + random.Random(8).randbytes(5000), id="ogg-magic-then-junk"),
        pytest.param(b"\x1a\x45\xdf\xa3" + random.Random(9).randbytes(5000), id="ebml-then-junk"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAVE" + random.Random(10).randbytes(5000), id="wav"),
        pytest.param(b"ID3" + random.Random(11).randbytes(5000), id="id3-then-junk"),
        pytest.param(None, id="webm-cut-before-its-audio"),
    ],
)
def test_what_is_not_audio_is_refused(data):
    if data is None:  # a WebM's header and track, cut before its first cluster of audio
        data = encode(synth([("speech", 1.0)]), kind="webm")
        data = data[: data.index(b"\x1f\x43\xb6\x75")]
        assert sniff(data) == "webm"
    error = refused(data)
    assert error.reason == "not_audio"
    assert error.message == NOT_AUDIO_MESSAGE
    assert str(error) == "This file is not audio we can read: record again or type your answer."


def test_a_video_without_sound_is_refused():
    if "mpeg4" not in av.codecs_available:
        pytest.skip("this PyAV's FFmpeg has no mpeg4 encoder")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as output:
        stream = output.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(10):
            frame = av.VideoFrame(64, 64, "yuv420p")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    assert refused(buffer.getvalue()).reason == "not_audio"


def test_a_codec_recorders_do_not_use_is_refused():
    """MP2 in Matroska decodes fine, but less of FFmpeg faces uploads: only recorders' codecs."""
    if "mp2" not in av.codecs_available:
        pytest.skip("this PyAV's FFmpeg has no mp2 encoder")
    data = encode(synth([("speech", 1.0)]), spec=("matroska", "mp2", {}))
    assert sniff(data) == "matroska"
    assert refused(data).reason == "not_audio"


def test_a_mp4_cut_before_its_index_is_refused():
    data = encode(synth([("speech", 2.0)]), kind="m4a")  # moov, the index, at the end
    assert refused(data[: len(data) // 2]).reason == "not_audio"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="no-bytes"),
        pytest.param(None, id="wav-without-samples"),
    ],
)
def test_an_empty_recording_is_refused(data):
    if data is None:
        data = wav_of(array("h"), 48_000)
        assert sniff(data) == "wav"
    error = refused(data)
    assert (error.reason, error.message) == ("empty", EMPTY_MESSAGE)


@pytest.mark.parametrize("kind", ["webm", "mp4", "wav"])
@pytest.mark.parametrize(
    "recording",
    [
        pytest.param(lambda: synth([("silence", 3.0)]), id="digital-silence"),
        pytest.param(lambda: synth([("silence", 3.0)], noise=0.004), id="low-hiss"),
        pytest.param(  # 2 ms at -4 dBFS in 5 s: a mouse click, nothing said
            lambda: array("h", [0] * 120_000 + [20_000, -20_000] * 48 + [0] * 120_000),
            id="one-click",
        ),
    ],
)
def test_a_silent_recording_is_refused(kind, recording):
    error = refused(encode(recording(), kind=kind))
    assert (error.reason, error.message) == ("silent", SILENT_MESSAGE)
    assert error.message.startswith("We could not hear anything: check your microphone")


def test_a_quiet_voice_is_not_silent():
    quiet = synth([("silence", 1.0), ("speech", 1.0), ("silence", 1.0)], amplitude=0.02)
    assert normalise(encode(quiet, kind="webm"), max_seconds=60).duration_seconds > 2.9


@pytest.mark.parametrize(
    ("max_seconds", "limit"),
    [(3, "3 seconds"), (2.5, "2.5 seconds")],
)
def test_a_recording_over_the_limit_is_refused_with_the_limit(max_seconds, limit):
    error = refused(encode(synth([("speech", 4.0)]), kind="webm"), max_seconds=max_seconds)
    assert error.reason == "too_long"
    assert error.message == (
        f"The recording is longer than the limit of {limit}: record a shorter answer or type it."
    )


def test_a_recording_at_the_limit_is_accepted():
    recording = normalise(encode(synth([("speech", 3.0)]), kind="webm"), max_seconds=3.05)
    assert recording.duration_seconds == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(300, "5 minutes"), (60, "1 minute"), (90, "90 seconds"), (1, "1 second")],
)
def test_the_limit_is_said_in_words(seconds, words):
    assert audio._duration_words(seconds) == words


def test_decoding_stops_soon_after_the_limit(monkeypatch):
    """A small file can expand to hours (Opus encodes 30 s of silence in a few KB): decoding
    stops at the limit plus a margin, it does not decode everything and then measure."""
    fed: list[float] = []
    resampler = audio.AudioResampler

    class CountingResampler:
        def __init__(self, **kwargs):
            self.inner = resampler(**kwargs)

        def resample(self, frame):
            if frame is not None:
                fed.append(frame.samples / frame.sample_rate)
            return self.inner.resample(frame)

    monkeypatch.setattr(audio, "AudioResampler", CountingResampler)
    data = encode(synth([("speech", 1.0), ("silence", 29.0)]), kind="webm")
    assert len(data) < 40_000
    assert refused(data, max_seconds=2).reason == "too_long"
    assert 2 < sum(fed) <= 2 + DECODE_MARGIN_SECONDS + 0.1


# --- Normalisation -----------------------------------------------------------------------------


def read_wav(data: bytes) -> tuple[int, int, int, bytes]:
    with wave.open(io.BytesIO(data)) as reader:
        frames = reader.readframes(reader.getnframes())
        return reader.getframerate(), reader.getnchannels(), reader.getsampwidth(), frames


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("kind", FORMATS)
def test_normalise_gives_16khz_mono_wav(kind, channels, example):
    recording = normalise(encode(example, kind=kind, channels=channels), max_seconds=60)
    assert isinstance(recording, Normalised)
    rate, channel_count, width, frames = read_wav(recording.wav)
    assert (rate, channel_count, width) == (16_000, 1, 2)
    assert recording.sample_rate == 16_000
    assert recording.samples.typecode == "h"
    assert frames == recording.samples.tobytes()
    assert recording.duration_seconds == pytest.approx(7.5, rel=0.01)
    assert len(recording.samples) / 16_000 == recording.duration_seconds
    assert recording.container == SNIFFED.get(kind, kind)
    assert recording.codec == {"libopus": "opus", "libmp3lame": "mp3"}.get(
        FORMATS[kind][1], FORMATS[kind][1]
    )
    assert not recording.truncated


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100])
def test_normalise_resamples_any_rate(rate):
    data = wav_of(synth([("silence", 0.5), ("speech", 2.0)], rate=rate), rate)
    recording = normalise(data, max_seconds=60)
    assert recording.duration_seconds == pytest.approx(2.5, rel=0.01)
    assert read_wav(recording.wav)[:3] == (16_000, 1, 2)


def test_normalise_keeps_the_level_and_the_timing():
    """The speech is where it was, as loud as it was: the delivery numbers read these samples."""
    recording = normalise(encode(synth(EXAMPLE), kind="wav"), max_seconds=60)
    samples = recording.samples

    def rms(start: float, end: float) -> float:
        chunk = samples[round(start * 16_000) : round(end * 16_000)]
        return math.sqrt(math.sumprod(chunk, chunk) / len(chunk))

    period = speech_period(16_000, 0.4)
    expected = math.sqrt(math.fsum(value * value for value in period) / len(period)) * 32767
    assert rms(0.0, 0.49) < 5
    assert rms(0.51, 1.49) == pytest.approx(expected, rel=0.02)
    assert rms(1.51, 3.99) < 5


def test_an_interrupted_upload_keeps_what_arrived():
    data = encode(synth([("speech", 3.0)]), kind="webm")
    recording = normalise(data[: len(data) * 2 // 3], max_seconds=60)
    assert 1.5 < recording.duration_seconds < 2.5


# --- Delivery numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*BROWSER_FORMATS, "wav"])
def test_delivery_on_the_example_structure(kind, example):
    recording = normalise(encode(example, kind=kind), max_seconds=60)
    delivery = delivery_measure(samples=recording.samples, transcript="")
    assert delivery.duration_seconds == pytest.approx(7.5, abs=0.05)
    assert delivery.time_to_first_word_seconds == pytest.approx(0.5, abs=0.05)
    # 1.0 + 1.5 + 1.0 s of speech: the 0.4 s gap is a gap (only gaps under 0.3 s are bridged),
    # though not a pause (those are 2 s or more).
    assert delivery.speaking_seconds == pytest.approx(3.5, abs=0.15)
    assert delivery.pause_count == 1
    assert delivery.longest_pause_seconds == pytest.approx(2.5, abs=0.1)


def test_delivery_is_deterministic(example):
    samples = normalise(encode(example, kind="webm"), max_seconds=60).samples
    first = delivery_measure(samples=samples, transcript="So, um, a queue.")
    again = delivery_measure(samples=array("h", samples), transcript="So, um, a queue.")
    assert first == again
    assert first.as_dict() == again.as_dict()


def test_short_gaps_are_bridged():
    delivery = measure(
        [("speech", 1.0), ("silence", 0.2), ("speech", 1.0), ("silence", 0.15), ("speech", 0.5)]
    )
    assert delivery.speaking_seconds == pytest.approx(2.85, abs=0.1)
    assert delivery.time_to_first_word_seconds == pytest.approx(0.0, abs=0.05)
    assert (delivery.pause_count, delivery.longest_pause_seconds) == (0, None)


def test_silence_before_the_first_word_and_after_the_last_is_not_a_pause():
    delivery = measure([("silence", 3.0), ("speech", 1.0), ("silence", 3.0)])
    assert delivery.time_to_first_word_seconds == pytest.approx(3.0, abs=0.05)
    assert delivery.speaking_seconds == pytest.approx(1.0, abs=0.1)
    assert (delivery.pause_count, delivery.longest_pause_seconds) == (0, None)


def test_pauses_are_counted_from_two_seconds():
    delivery = measure(
        [
            ("speech", 1.0),
            ("silence", 1.8),  # a hesitation, not a pause
            ("speech", 1.0),
            ("silence", 2.2),
            ("speech", 1.0),
            ("silence", 3.4),
            ("speech", 1.0),
        ]
    )
    assert delivery.pause_count == 2
    assert delivery.longest_pause_seconds == pytest.approx(3.4, abs=0.1)
    assert delivery.speaking_seconds == pytest.approx(4.0, abs=0.2)


def test_no_speech_gives_no_first_word_and_no_pace():
    delivery = delivery_measure(samples=array("h", bytes(2 * 16_000 * 4)), transcript="")
    assert delivery.speaking_seconds == 0
    assert delivery.time_to_first_word_seconds is None
    assert delivery.words_per_minute is None
    assert delivery.duration_seconds == 4.0


def test_hiss_alone_is_not_speech():
    samples = synth([("silence", 5.0)], rate=16_000, noise=0.01)
    delivery = delivery_measure(samples=samples, transcript="")
    assert delivery.speaking_seconds == 0
    assert delivery.time_to_first_word_seconds is None


def test_delivery_takes_other_rates_and_refuses_what_the_detector_cannot():
    samples = synth([("silence", 1.0), ("speech", 2.0)], rate=48_000, noise=0.002)
    delivery = delivery_measure(samples=samples, sample_rate=48_000, transcript="")
    assert delivery.speaking_seconds == pytest.approx(2.0, abs=0.1)
    with pytest.raises(ValueError, match="8, 16, 32 or 48 kHz"):
        delivery_measure(samples=samples, sample_rate=44_100, transcript="")


def test_words_per_minute_is_words_over_speaking_minutes():
    transcript = "We shard by user id so one user's writes stay on one node, and we replicate."
    assert len(transcript.split()) == 16
    delivery = measure(
        [("speech", 2.0), ("silence", 2.5), ("speech", 1.0), ("silence", 1.0)],
        transcript=transcript,
    )
    assert delivery.word_count == 16
    assert delivery.speaking_seconds == pytest.approx(3.0, abs=0.1)
    # 16 words in 3 s of speech: 320 a minute; the 2.5 s pause and the silence do not count.
    assert delivery.words_per_minute == pytest.approx(16 / delivery.speaking_seconds * 60, abs=0.1)
    assert delivery.words_per_minute == pytest.approx(320, rel=0.04)


def test_under_a_second_of_speech_has_no_pace():
    delivery = measure([("silence", 1.0), ("speech", 0.6), ("silence", 1.0)], transcript="Yes.")
    assert delivery.speaking_seconds == pytest.approx(0.6, abs=0.1)
    assert delivery.word_count == 1
    assert delivery.words_per_minute is None


@pytest.mark.parametrize(
    ("transcript", "words"),
    [
        ("", 0),
        ("  \n ", 0),
        ("Redis", 1),
        ("The write-ahead log, then O(n) lookups — 3.5 ms, don't worry.", 10),
        ("Um... uh, hmm!", 3),
    ],
)
def test_word_count(transcript, words):
    delivery = delivery_measure(samples=array("h"), transcript=transcript)
    assert delivery.word_count == words


@pytest.mark.parametrize(
    ("transcript", "fillers"),
    [
        ("", {}),
        ("We use a write-ahead log for durability.", {}),
        ("Um, so, uh, the cache. Umm. Uhh. Hmm, erm, er, ah.", {
            "um": 2, "uh": 2, "hmm": 1, "er": 2, "ah": 1,
        }),
        ("UM, Uh, HMM", {"um": 1, "uh": 1, "hmm": 1}),
        # "like" is a filler before a comma or "you know", not as a verb or a preposition.
        ("I like Postgres, it's like a log, and like, you know, it works.", {
            "like": 1, "you know": 1,
        }),
        ("It was like you know slow", {"like": 1, "you know": 1}),
        ("Do you know Redis? Did you know that? If you know it, as you know.", {}),
        ("You know, the index. I mean, it's basically, actually, a tree.", {
            "you know": 1, "i mean": 1, "basically": 1, "actually": 1,
        }),
        ("It's kind of slow and sort of leaky, kinda.", {"kind of": 2, "sort of": 1}),
        ("What kind of index? A sort of B-tree, the same kind of thing.", {}),
        # Word boundaries: no filler inside another word.
        ("Summary: human error, an umbrella, the likelihood, Utah, ahead, whummer.", {}),
        ("He\u2019s, like, actually right", {"like": 1, "actually": 1}),
    ],
)  # fmt: skip
def test_filler_words(transcript, fillers):
    assert filler_counts(transcript) == fillers
    delivery = delivery_measure(samples=array("h"), transcript=transcript)
    assert delivery.fillers == fillers
    assert delivery.filler_count == sum(fillers.values())


def test_delivery_as_dict_is_json_and_labelled_approximate(example):
    samples = normalise(encode(example, kind="webm"), max_seconds=60).samples
    delivery = delivery_measure(samples=samples, transcript="Um, it is, like, a queue.")
    stored = json.loads(json.dumps(delivery.as_dict()))
    assert stored == delivery.as_dict()
    assert set(stored) == {
        "duration_seconds",
        "speaking_seconds",
        "time_to_first_word_seconds",
        "pause_count",
        "longest_pause_seconds",
        "word_count",
        "words_per_minute",
        "filler_count",
        "fillers",
        "label",
        "method",
    }
    assert stored["fillers"] == {"um": 1, "like": 1}
    assert stored["label"] == LABEL == delivery.label
    assert stored["label"].startswith("Approximate")
    assert Delivery(**stored) == delivery


# --- Real speech (espeak-ng) -------------------------------------------------------------------

SPOKEN = (
    "<speak>Um, so I would put a Redis cache in front of the database, and, you know, keep "
    'the write-ahead log on its own disk.<break time="2500ms"/>Then, basically, the read '
    "replicas follow the log.</speak>"
)
SPOKEN_TRANSCRIPT = (
    "Um, so I would put a Redis cache in front of the database, and, you know, keep the "
    "write-ahead log on its own disk. Then, basically, the read replicas follow the log."
)


@pytest.mark.parametrize("kind", ["wav", "webm"])
def test_delivery_on_spoken_speech(kind, tmp_path):
    """espeak-ng speaks a technical answer with a 2.5 s pause, after 1 s of room hiss; as WAV
    (22.05 kHz) and as a browser would upload it (WebM/Opus, 48 kHz)."""
    speech, rate = espeak(SPOKEN, tmp_path)
    lead = round(1.0 * rate)
    hiss = random.Random(3).choices(range(-60, 61), k=lead + len(speech) + rate // 2)
    padded = array("h", bytes(2 * lead)) + speech + array("h", bytes(2 * (rate // 2)))
    samples = array(
        "h", (max(-32768, min(32767, s + h)) for s, h in zip(padded, hiss, strict=True))
    )
    data = wav_of(samples, rate) if kind == "wav" else encode(samples, kind="webm", rate=rate)

    recording = normalise(data, max_seconds=60)
    assert recording.duration_seconds == pytest.approx(len(samples) / rate, rel=0.01)
    delivery = delivery_measure(samples=recording.samples, transcript=SPOKEN_TRANSCRIPT)
    assert delivery.time_to_first_word_seconds == pytest.approx(1.0, abs=0.1)
    assert delivery.pause_count == 1
    assert delivery.longest_pause_seconds == pytest.approx(2.5, abs=0.3)
    # The speech is everything but the lead, the pause and the tail, give or take the
    # inter-word gaps the detector does not bridge.
    expected = recording.duration_seconds - 1.0 - 2.5 - 0.5
    assert expected * 0.85 <= delivery.speaking_seconds <= expected + 0.1
    assert delivery.word_count == 32
    assert 120 <= delivery.words_per_minute <= 260  # espeak-ng's default is 175 words a minute
    assert delivery.fillers == {"um": 1, "you know": 1, "basically": 1}
