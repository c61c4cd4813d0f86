"""Spoken answers: a recording in, a transcript draft and "how you spoke" out (DESIGN.md §10).

`audio` sniffs and decodes an upload to 16 kHz mono WAV (PyAV, FFmpeg bundled) and refuses what
is not a usable recording; `delivery` measures speaking time, pauses, pace and filler words from
those samples and the raw transcript, never from a model's timestamps.
"""
