"""A recording as uploaded, decoded to what transcription and the delivery numbers read.

`sniff` names the container from the bytes themselves (a browser's, or anyone's, Content-Type is
never trusted); `normalise` decodes it with PyAV (FFmpeg, bundled in its wheels) from memory,
resamples it to 16 kHz mono signed 16-bit and returns the WAV bytes and the samples, or raises
`AudioRefused` with the message the candidate sees: not audio, empty, too long or silent.

Untrusted input, so FFmpeg is given as little room as possible: only the demuxer of the sniffed
container (FFmpeg never probes the other few hundred), only the audio codecs that recorders
produce, and decoding stops once the audio is past the limit (a small file can expand to hours:
a decompression bomb).
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from dataclasses import dataclass
from typing import Final, Literal

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

# What transcription engines want (Whisper is trained on 16 kHz mono) and what the VAD reads.
SAMPLE_RATE: Final = 16_000
SAMPLE_WIDTH: Final = 2  # bytes: signed 16-bit

# Decoding stops this far past the limit: the margin absorbs the encoder's priming and padding
# samples (AAC's 1024-2112, Opus's pre-skip) that a decoder may hand back before they are cut.
DECODE_MARGIN_SECONDS: Final = 1.0

# "Silent": under 0.1 s in all of samples outside [-256, 255] (peaks under -42 dBFS, give or
# take a click or a tap; the test reads the samples' high bytes, see _is_silent), or the RMS
# under 33 (-60 dBFS). A voice a metre from a laptop microphone peaks around -20 dBFS; a muted or
# unplugged microphone gives digital silence or a hiss far below both.
SILENCE_LOUD_SECONDS: Final = 0.1
SILENCE_RMS: Final = 33
# The RMS is estimated on every 4th block of 30 ms (a quarter of the work: any sound longer than
# 120 ms is in it); contiguous blocks, so a steady tone is not aliased away as a stride would.
RMS_BLOCK: Final = 480
RMS_BLOCK_STRIDE: Final = 4

type Container = Literal["webm", "matroska", "ogg", "mp4", "wav", "mp3"]
type RefusalReason = Literal["not_audio", "empty", "too_long", "silent"]

# The FFmpeg demuxer for each container `sniff` names: the only one FFmpeg may use on the upload.
DEMUXERS: Final[dict[Container, str]] = {
    "webm": "matroska",
    "matroska": "matroska",
    "ogg": "ogg",
    "mp4": "mov",
    "wav": "wav",
    "mp3": "mp3",
}
# What browsers' MediaRecorder (Opus in WebM or Ogg, AAC in MP4), phones and desktop recorders
# produce. Other codecs FFmpeg could decode are refused: less of FFmpeg faces the upload.
CODECS: Final = frozenset({"opus", "vorbis", "aac", "mp3", "flac"})
PCM_CODEC_PREFIX: Final = "pcm_"

NOT_AUDIO_MESSAGE: Final = "This file is not audio we can read: record again or type your answer."
EMPTY_MESSAGE: Final = "The recording is empty: record again or type your answer."
SILENT_MESSAGE: Final = (
    "We could not hear anything: check your microphone, then record again or type your answer."
)


class AudioRefused(Exception):
    """The upload is not a recording we can use; `message` says why, in the candidate's words."""

    def __init__(self, message: str, *, reason: RefusalReason) -> None:
        super().__init__(message)
        self.message = message
        self.reason: RefusalReason = reason


@dataclass(frozen=True, slots=True)
class Normalised:
    """A recording decoded to 16 kHz mono signed 16-bit PCM."""

    wav: bytes  # a complete WAV file: what a transcription engine is sent
    samples: array[int]  # typecode "h", native byte order: what the delivery numbers read
    duration_seconds: float
    container: Container  # as sniffed
    codec: str  # FFmpeg's name for the audio codec: "opus", "aac", ...
    # FFmpeg reported damage in the container and decoding stopped there: what came before it is
    # kept. (A file merely cut short, an interrupted upload, usually just ends early.)
    truncated: bool = False
    sample_rate: int = SAMPLE_RATE


def sniff(data: bytes) -> Container | None:
    """The container, from the bytes' magic numbers; None for anything else."""
    if data.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, and WebM (its DocType "webm")
        return "webm" if b"webm" in data[:64] else "matroska"
    if data.startswith(b"OggS"):
        return "ogg"
    if data[4:8] == b"ftyp":  # ISO base media: MP4, M4A (Safari's audio/mp4)
        return "mp4"
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or _mpeg_audio_frame(data[:4]):
        return "mp3"
    return None


def _mpeg_audio_frame(header: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, then a version, layer, bitrate and sample rate
    that are not the reserved values (which rule out most random bytes starting with 0xFFE)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return False
    version = (header[1] >> 3) & 0b11
    layer = (header[1] >> 1) & 0b11
    bitrate = header[2] >> 4
    rate = (header[2] >> 2) & 0b11
    # layer 0 is reserved (0xFFF1/0xFFF9 start AAC in ADTS, which is not MP3)
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and rate != 0b11


def normalise(data: bytes, *, max_seconds: float) -> Normalised:
    """Decode `data` to 16 kHz mono WAV, or raise AudioRefused.

    `max_seconds` is the hard limit: pass the answer's limit plus whatever grace the caller
    allows (a browser stops its recorder a little after its timer says so).
    """
    if not data:
        raise AudioRefused(EMPTY_MESSAGE, reason="empty")
    container = sniff(data)
    if container is None:
        raise AudioRefused(NOT_AUDIO_MESSAGE, reason="not_audio")
    pcm, codec, truncated = _decode(data, container, max_seconds=max_seconds)
    samples = array("h")
    samples.frombytes(pcm)
    if not samples:
        raise AudioRefused(EMPTY_MESSAGE, reason="empty")
    duration = len(samples) / SAMPLE_RATE
    if duration > max_seconds:
        raise _too_long(max_seconds)
    if _is_silent(pcm, samples):
        raise AudioRefused(SILENT_MESSAGE, reason="silent")
    return Normalised(
        wav=_wav(samples),
        samples=samples,
        duration_seconds=duration,
        container=container,
        codec=codec,
        truncated=truncated,
    )


def _decode(data: bytes, container: Container, *, max_seconds: float) -> tuple[bytes, str, bool]:
    """The first audio stream as 16 kHz mono s16 bytes, its codec, and whether it was cut short
    by damage. Raises AudioRefused when nothing can be decoded or it runs past the limit."""
    stop_after = max_seconds + DECODE_MARGIN_SECONDS
    stop_after_bytes = stop_after * SAMPLE_RATE * SAMPLE_WIDTH
    try:
        source = av.open(io.BytesIO(data), mode="r", format=DEMUXERS[container])
    except (av.error.FFmpegError, ValueError) as error:
        raise AudioRefused(NOT_AUDIO_MESSAGE, reason="not_audio") from error
    with source:
        if not source.streams.audio:
            raise AudioRefused(NOT_AUDIO_MESSAGE, reason="not_audio")
        stream = source.streams.audio[0]
        codec = stream.codec_context.codec.canonical_name
        if codec not in CODECS and not codec.startswith(PCM_CODEC_PREFIX):
            raise AudioRefused(NOT_AUDIO_MESSAGE, reason="not_audio")
        out = bytearray()
        mixer = _Mixer()
        decoded_seconds = 0.0
        truncated = False
        try:
            for packet in source.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet: FFmpeg's own tools skip it too
                for frame in frames:
                    if frame.sample_rate > 0:
                        decoded_seconds += frame.samples / frame.sample_rate
                    # Counted before the resampler and after it: a stream's rate is input too.
                    if decoded_seconds > stop_after or len(out) > stop_after_bytes:
                        raise _too_long(max_seconds)
                    mixer.add(frame, out)
        except (av.error.FFmpegError, ValueError) as error:
            # Damage in the container itself: keep what came before it, if anything did.
            if not out:
                raise AudioRefused(NOT_AUDIO_MESSAGE, reason="not_audio") from error
            truncated = True
        mixer.flush(out)
    return bytes(out), codec, truncated


class _Mixer:
    """Resamples decoded frames to 16 kHz mono s16, following a stream whose format changes
    midway (FFmpeg's resampler is set up for one input format)."""

    def __init__(self) -> None:
        self._resampler: AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def add(self, frame: AudioFrame, out: bytearray) -> None:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or shape != self._input:
            self.flush(out)
            self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._input = shape
        for resampled in self._resampler.resample(frame):
            _append(resampled, out)

    def flush(self, out: bytearray) -> None:
        if self._resampler is not None:
            for resampled in self._resampler.resample(None):
                _append(resampled, out)
            self._resampler = None


def _append(frame: AudioFrame, out: bytearray) -> None:
    # A plane's buffer can be padded past the samples (FFmpeg aligns it): take only the samples.
    out += bytes(frame.planes[0])[: frame.samples * SAMPLE_WIDTH]


def _is_silent(pcm: bytes, samples: array[int]) -> bool:
    # A sample is within [-256, 255] exactly when its high byte is 0x00 or 0xFF: counting those
    # bytes is a pass in C, where max() over the array would box every sample (50 ms a minute).
    high = pcm[1::2] if sys.byteorder == "little" else pcm[0::2]
    loud = len(high) - high.count(0x00) - high.count(0xFF)
    if loud < SILENCE_LOUD_SECONDS * SAMPLE_RATE:
        return True
    total, count = 0.0, 0
    for start in range(0, len(samples), RMS_BLOCK * RMS_BLOCK_STRIDE):
        block = samples[start : start + RMS_BLOCK]
        total += math.sumprod(block, block)
        count += len(block)
    return math.sqrt(total / count) < SILENCE_RMS


def _wav(samples: array[int]) -> bytes:
    pcm = samples
    if sys.byteorder == "big":  # WAV is little-endian
        pcm = array("h", samples)
        pcm.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _too_long(max_seconds: float) -> AudioRefused:
    return AudioRefused(
        f"The recording is longer than the limit of {_duration_words(max_seconds)}: "
        "record a shorter answer or type it.",
        reason="too_long",
    )


def _duration_words(seconds: float) -> str:
    """5 minutes, 1 minute, 90 seconds, 1.5 seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")
