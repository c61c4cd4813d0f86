"""Benchmark: a spoken answer's audio on the server (interviews/speech), per minute of audio.

Two measurements, on one minute of what browsers upload, made here with PyAV (the tests' own
fixture makers, interviews/tests/test_speech_audio.py): speech-like tone bursts (0.2 to 1.2 s,
gaps of 0.1 to 0.8 s, a 2 to 3 s pause now and then, a low hiss throughout) encoded as WebM/Opus
(Chrome, Firefox), Ogg/Opus (Firefox) and fragmented MP4/AAC (Safari); and, where espeak-ng is
installed, a minute of synthetic speech as WebM/Opus.

1. Decode + normalise: `normalise()` from the uploaded bytes to 16 kHz mono WAV and samples
   (sniffing, PyAV's decoder and resampler, the silence check, the WAV). Goal: <= 200 ms CPU.
2. The delivery numbers: `delivery_measure()` on those samples and a one-minute transcript (the
   voice-activity detector on 30 ms frames, the loudness refinement, the counts). Goal: <= 50 ms
   CPU.

CPU time is this process's (`time.process_time`: every thread, FFmpeg's included), per run,
over ROUNDS runs after one that warms up and is not counted; the table gives the median and the
range. Both goals are per minute of audio, so the minute measured is the unit.

    .venv/bin/python bench/speech.py [--rounds 15]

Needs no database and no settings. The table goes to stdout and to bench/results/speech.md;
progress to stderr. The exit code is 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from array import array
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "speech.md"
GOAL_NORMALISE_MS = 200
GOAL_DELIVERY_MS = 50
SECONDS = 60.0
# One minute of an answer, about 150 words, a few fillers: the transcript the counts read.
TRANSCRIPT = " ".join(
    [
        "Um, so for the rate limiter I would, you know, start with a token bucket per user,",
        "kept in Redis, because it's basically one atomic operation per request. Each bucket",
        "has a capacity and a refill rate, and the check is a Lua script, so two servers",
        "cannot both take the last token. Uh, for bursts the capacity is what matters, and",
        "like, the refill rate is the sustained limit. I mean, a sliding window log is more",
        "precise but it's kind of expensive in memory, one entry per request. If Redis is",
        "down, we fail open for reads and closed for writes, actually, and we alert. The",
        "keys expire after the bucket would be full again, so idle users cost nothing. Then",
        "for fairness across tenants, sort of a second bucket per organisation, checked",
        "after the user's. Hmm, and we return the remaining tokens and the reset time in",
        "headers, so clients can back off before they get a four twenty nine. That's the",
        "design, and I'd load test it with, um, a few thousand keys to check the latency.",
    ]
)
SPOKEN = (
    "<speak>Um, so for the rate limiter I would start with a token bucket per user, kept in "
    "Redis, because it is basically one atomic operation per request. Each bucket has a "
    'capacity and a refill rate.<break time="2200ms"/>The check is a Lua script, so two '
    "servers cannot both take the last token. For bursts the capacity is what matters, and "
    "the refill rate is the sustained limit. A sliding window log is more precise, but it "
    'is expensive in memory.<break time="1500ms"/>If Redis is down, we fail open for reads '
    "and closed for writes, and we alert. The keys expire after the bucket would be full "
    "again, so idle users cost nothing. For fairness across tenants, a second bucket per "
    "organisation, checked after the user's.</speak>"
)


def log(message: str) -> None:
    print(f"speech: {message}", file=sys.stderr, flush=True)


def tone_bursts(seed: int = 18) -> list[tuple[str, float]]:
    """One minute of speech-like structure: bursts, short gaps, and a long pause now and then."""
    rnd = random.Random(seed)
    parts: list[tuple[str, float]] = [("silence", 0.6)]
    total = 0.6
    while total < SECONDS:
        burst = round(rnd.uniform(0.2, 1.2), 2)
        gap = round(rnd.uniform(2.0, 3.0) if rnd.random() < 0.08 else rnd.uniform(0.1, 0.8), 2)
        parts += [("speech", burst), ("silence", gap)]
        total += burst + gap
    excess = total - SECONDS
    kind, last = parts[-1]
    parts[-1] = (kind, round(last - excess, 3))
    return parts


def espeak_minute() -> tuple[array, int] | None:
    """espeak-ng speaking SPOKEN after 0.5 s, padded to one minute, a low hiss throughout: the
    samples and their rate (22,050 Hz); None without espeak-ng."""
    program = shutil.which("espeak-ng")
    if program is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spoken.wav"
        subprocess.run([program, "-m", "-w", str(path), SPOKEN], check=True, timeout=120)
        with wave.open(str(path)) as reader:
            rate = reader.getframerate()
            speech = array("h", reader.readframes(reader.getnframes()))
    total = round(SECONDS * rate)
    lead = rate // 2
    speech = array("h", bytes(2 * lead)) + speech[: total - lead]
    speech += array("h", bytes(2 * (total - len(speech))))
    hiss = random.Random(5).choices(range(-60, 61), k=len(speech))
    padded = (max(-32768, min(32767, s + h)) for s, h in zip(speech, hiss, strict=True))
    return array("h", padded), rate


def cpu_ms(work: Callable[[], object], rounds: int) -> list[float]:
    """CPU milliseconds of `work`, `rounds` times, after one uncounted warm-up run."""
    work()
    times: list[float] = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        times.append((time.process_time() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    started = time.perf_counter()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import av

    from interviews.speech.audio import normalise
    from interviews.speech.delivery import delivery_measure
    from interviews.tests import test_speech_audio as fixtures

    log("making one minute of browser audio")
    bursts = fixtures.synth(tone_bursts(), noise=0.002)
    sources: list[tuple[str, bytes]] = []
    for kind, label in (
        ("webm", "WebM/Opus (Chrome, Firefox)"),
        ("ogg", "Ogg/Opus (Firefox)"),
        ("mp4", "MP4/AAC, fragmented (Safari)"),
    ):
        sources.append((f"{label}, tone bursts", fixtures.encode(bursts, kind=kind)))
    spoken = espeak_minute()
    if spoken is None:
        log("espeak-ng is not installed: no row of synthetic speech")
    else:  # Opus takes no 22.05 kHz: the encoder resamples it to 48 kHz, as a browser records
        speech, rate = spoken
        webm = fixtures.encode(speech, kind="webm", rate=rate)
        sources.append(("WebM/Opus (Chrome, Firefox), espeak-ng speech", webm))

    results: list[tuple[str, int, float, list[float], list[float], str]] = []
    failures: list[str] = []
    for label, data in sources:
        log(f"{label}: normalise and delivery x {args.rounds}")
        recording = normalise(data, max_seconds=SECONDS + 1)
        per_minute = SECONDS / recording.duration_seconds
        samples = recording.samples
        normalise_work = functools.partial(normalise, data, max_seconds=SECONDS + 1)
        delivery_work = functools.partial(delivery_measure, samples=samples, transcript=TRANSCRIPT)
        normalise_ms = [ms * per_minute for ms in cpu_ms(normalise_work, args.rounds)]
        delivery_ms = [ms * per_minute for ms in cpu_ms(delivery_work, args.rounds)]
        delivery = delivery_work()
        summary = (
            f"speaking {delivery.speaking_seconds:.1f} s, first word at "
            f"{delivery.time_to_first_word_seconds} s, pauses of 2 s or more: "
            f"{delivery.pause_count} (longest {delivery.longest_pause_seconds} s)"
        )
        results.append(
            (label, len(data), recording.duration_seconds, normalise_ms, delivery_ms, summary)
        )
        if statistics.median(normalise_ms) > GOAL_NORMALISE_MS:
            failures.append(f"{label}: decode + normalise over {GOAL_NORMALISE_MS} ms")
        if statistics.median(delivery_ms) > GOAL_DELIVERY_MS:
            failures.append(f"{label}: delivery numbers over {GOAL_DELIVERY_MS} ms")

    def cell(values: list[float]) -> str:
        return f"**{statistics.median(values):.0f} ms** ({min(values):.0f}-{max(values):.0f})"

    lines = [
        "| Upload, 1 minute | Size | Decode + normalise to 16 kHz WAV, CPU | Delivery numbers "
        "(VAD + counts), CPU | Measured |",
        "|---|---|---|---|---|",
    ]
    for label, size, duration, normalise_ms, delivery_ms, summary in results:
        lines.append(
            f"| {label} ({duration:.2f} s) | {size / 1024:.0f} KiB | {cell(normalise_ms)} | "
            f"{cell(delivery_ms)} | {summary} |"
        )
    lines.append(
        f"| **Goal**, per minute of audio | | <= {GOAL_NORMALISE_MS} ms | "
        f"<= {GOAL_DELIVERY_MS} ms | |"
    )
    footer = "Goals met." if not failures else "NOT met: " + "; ".join(failures)
    output = "\n".join(lines)
    print(output)
    print()
    print(footer)
    runtime = time.perf_counter() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Spoken answers: audio on the server, per minute\n\n"
        + output
        + "\n\n"
        + footer
        + f"\n\nMedian of {args.rounds} runs after a warm-up (range in brackets), CPU time of this"
        " process (`time.process_time`), scaled to exactly one minute of audio.\n"
        + "\n## Machine\n\n"
        + f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        + f"- Cores: {os.cpu_count()}; OS: {platform.platform()}; Python "
        + f"{platform.python_version()}\n"
        + f"- PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}); "
        + f"webrtcvad-wheels {metadata.version('webrtcvad-wheels')}\n"
        + f"- Runtime: {runtime:.0f} s\n",
        encoding="utf-8",
    )
    log(f"wrote {RESULTS.relative_to(ROOT)} in {runtime:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
