// Spoken answers: record, then transcribe, then correct, then submit. Enhances each
// <div data-recorder> the server renders in an answer form (see its markup in the templates):
// a record/stop toggle (MediaRecorder), elapsed time and a level meter while recording, one
// multipart upload when it stops, and the server's transcript (a <template data-transcript>
// in the fragments its polling swaps in) put into the answer box to be corrected. Typing always
// stays available: without a microphone nothing here is needed. Plus "Read the question aloud"
// where the browser has speech voices. No inline styles, no inline handlers (strict CSP).
(function () {
  "use strict";

  if (window.MockroomRecorder) return; // this script loaded twice
  window.MockroomRecorder = true;

  const SELECTOR = "[data-recorder]";
  const LABEL_RECORD = "Record your answer";
  const LABEL_STOP = "Stop recording";
  const LABEL_SPEAK = "Read the question aloud";
  const LABEL_STOP_SPEAKING = "Stop reading";
  const MESSAGES = {
    unavailable: "Recording is not available in this browser: type your answer.",
    blocked:
      "Your microphone is blocked or missing: allow it in the browser's site settings, or type your answer.",
    cannotStart: "Recording could not start in this browser: type your answer.",
    recording: "Recording… press Stop when you are done",
    uploading: "Uploading your recording…",
    transcribing: "Your recording is uploaded: transcribing it…",
    empty: "Nothing was recorded: record again, or type your answer.",
    failed: "The upload failed: your typed text is untouched. Record again, or type your answer.",
    tooLarge: "The recording is too large to upload: record a shorter answer, or type your answer.",
    noWords: "No words were heard in your recording: record again, or type your answer.",
    done: "Your transcript is in the answer box: correct it, then submit.",
  };
  const DEFAULT_MAX_SECONDS = 300;
  const UPLOAD_TIMEOUT_MS = 120000;
  const TICK_MS = 250;

  const canRecord = Boolean(
    window.MediaRecorder &&
      navigator.mediaDevices &&
      typeof navigator.mediaDevices.getUserMedia === "function"
  );
  const synth = "speechSynthesis" in window ? window.speechSynthesis : null;

  const recorders = new Map(); // root element -> its controller, each enhanced once
  const applied = new Set(); // "<textarea id>:<recording id>": a transcript is applied once

  function format(seconds) {
    const m = Math.floor(seconds / 60);
    const s = seconds % 60;
    return m + ":" + String(s).padStart(2, "0");
  }

  function limitText(seconds) {
    if (seconds % 60 === 0) return seconds / 60 + "-minute limit";
    return seconds + "-second limit";
  }

  function chooseMimeType() {
    const candidates = ["audio/webm;codecs=opus", "audio/mp4"];
    if (typeof MediaRecorder.isTypeSupported !== "function") return "";
    for (const type of candidates) {
      if (MediaRecorder.isTypeSupported(type)) return type;
    }
    return ""; // the browser's default
  }

  function filenameFor(type) {
    if (/mp4|m4a|aac/i.test(type)) return "answer.m4a";
    if (/ogg/i.test(type)) return "answer.ogg";
    return "answer.webm";
  }

  // The CSRF token htmx sends: <body hx-headers='{"X-CSRFToken": "..."}'> (templates/base.html),
  // else the form's hidden field, else Django's cookie.
  function csrfToken(root) {
    const holder = root.closest("[hx-headers]") || document.body;
    try {
      const headers = JSON.parse(holder.getAttribute("hx-headers") || "{}");
      if (headers && headers["X-CSRFToken"]) return String(headers["X-CSRFToken"]);
    } catch (error) {
      // not JSON: try the others
    }
    const form = root.closest("form");
    const field = (form || document).querySelector("input[name=csrfmiddlewaretoken]");
    if (field && field.value) return field.value;
    const cookie = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
    return cookie ? decodeURIComponent(cookie[1]) : "";
  }

  // Our own endpoint's HTML fragment, trusted: swapped in by htmx like any response of ours
  // (its hx-get polling, hx-swap-oob parts and htmx:load all work); without htmx.swap, parsed
  // inertly (DOMParser runs no script), inserted, then htmx.process().
  function insertFragment(slot, html) {
    const htmx = window.htmx;
    if (htmx && typeof htmx.swap === "function") {
      htmx.swap(slot, html, { swapStyle: "innerHTML", swapDelay: 0, settleDelay: 0 });
      return;
    }
    const parsed = new DOMParser().parseFromString(html, "text/html");
    slot.replaceChildren(...Array.from(parsed.body.childNodes));
    if (htmx && typeof htmx.process === "function") htmx.process(slot);
  }

  function looksLikeDocument(html) {
    return /^\s*<(!doctype|html)/i.test(html);
  }

  function collapse(text) {
    return (text || "").replace(/\s+/g, " ").trim();
  }

  // --- Read the question aloud (progressive enhancement) ---------------------------------------

  let speaking = null; // { button, utterance }

  function hasVoices() {
    try {
      return Boolean(synth) && synth.getVoices().length > 0;
    } catch (error) {
      return false;
    }
  }

  function stopSpeaking() {
    const current = speaking;
    speaking = null;
    if (current) current.button.textContent = LABEL_SPEAK;
    if (synth && (synth.speaking || synth.pending)) synth.cancel();
  }

  function speak(button, sourceId) {
    if (speaking && speaking.button === button) {
      stopSpeaking();
      return;
    }
    stopSpeaking();
    const source = sourceId && document.getElementById(sourceId);
    const text = source ? collapse(source.textContent) : "";
    if (!text) return;
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = document.documentElement.lang || "en";
    const finished = function () {
      if (speaking && speaking.utterance === utterance) {
        speaking = null;
        button.textContent = LABEL_SPEAK;
      }
    };
    utterance.addEventListener("end", finished);
    utterance.addEventListener("error", finished);
    speaking = { button: button, utterance: utterance };
    button.textContent = LABEL_STOP_SPEAKING;
    synth.speak(utterance);
  }

  function offerSpeech() {
    if (!hasVoices()) return;
    recorders.forEach(function (controller) {
      if (controller) controller.offerSpeech();
    });
  }

  if (synth && typeof synth.addEventListener === "function") {
    synth.addEventListener("voiceschanged", offerSpeech);
  }

  // --- One recorder --------------------------------------------------------------------------

  function Recorder(root) {
    const controls = root.querySelector(".recorder-controls");
    const button = root.querySelector("[data-record]");
    const elapsed = root.querySelector("[data-elapsed]");
    const level = root.querySelector("[data-level]");
    const speakButton = root.querySelector("[data-speak]");
    const status = root.querySelector("[data-status]");
    const slot = root.querySelector("[data-transcription]") || root;
    const maxSeconds = Math.max(1, Math.floor(Number(root.dataset.maxSeconds)) || DEFAULT_MAX_SECONDS);

    // "idle" | "starting" | "recording" | "uploading"
    let state = "idle";
    let session = null; // { stream, recorder, chunks, context, analyser, samples, timer, frame, startedAt, capped }
    let disposed = false;
    let epoch = 0; // bumped by halt(): a microphone granted after it is let go at once
    const announced = new WeakSet(); // server alerts already copied into the status

    function setStatus(message) {
      if (status && status.textContent !== message) status.textContent = message; // said once
    }

    function setBusy(busy) {
      if (!button) return;
      if (busy) button.setAttribute("aria-disabled", "true");
      else button.removeAttribute("aria-disabled");
    }

    function setPressed(pressed) {
      if (!button) return;
      button.setAttribute("aria-pressed", pressed ? "true" : "false");
      button.textContent = pressed ? LABEL_STOP : LABEL_RECORD;
    }

    function showElapsed(seconds) {
      if (elapsed) elapsed.textContent = format(seconds);
    }

    // A page restored from a snapshot may carry a recording's state: start from scratch.
    setPressed(false);
    setBusy(false);
    showElapsed(0);
    if (level) level.value = 0;

    // Stop the clock and the meter, stop every track (the browser's "in use" light goes off)
    // and close the AudioContext.
    function release(s) {
      if (s.timer) window.clearInterval(s.timer);
      if (s.frame) window.cancelAnimationFrame(s.frame);
      s.timer = 0;
      s.frame = 0;
      s.stream.getTracks().forEach(function (track) {
        track.stop();
      });
      if (s.context && s.context.state !== "closed") s.context.close().catch(function () {});
      s.context = null;
      if (level) level.value = 0;
    }

    function meter() {
      const s = session;
      if (!s || !s.analyser || !level) return;
      s.analyser.getFloatTimeDomainData(s.samples);
      let sum = 0;
      for (let i = 0; i < s.samples.length; i++) sum += s.samples[i] * s.samples[i];
      const rms = Math.sqrt(sum / s.samples.length);
      // -60 dBFS (silence) .. 0 dBFS (full scale), as 0..1: speech moves the bar visibly.
      const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
      level.value = Math.min(1, Math.max(0, (db + 60) / 60));
      s.frame = window.requestAnimationFrame(meter);
    }

    function tick() {
      const s = session;
      if (!s) return;
      if (!root.isConnected) {
        dispose(); // the form was replaced while recording: let go of the microphone
        return;
      }
      const seconds = Math.min(maxSeconds, Math.floor((performance.now() - s.startedAt) / 1000));
      showElapsed(seconds);
      if ((performance.now() - s.startedAt) / 1000 >= maxSeconds) {
        s.capped = true;
        stop();
      }
    }

    async function start() {
      state = "starting";
      setBusy(true);
      stopSpeaking(); // the speakers would be recorded
      const asked = epoch;
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (error) {
        // NotAllowedError, NotFoundError, SecurityError, NotReadableError...: the textarea is untouched.
        if (asked !== epoch) return;
        idle(MESSAGES.blocked);
        return;
      }
      if (disposed || asked !== epoch) {
        stream.getTracks().forEach(function (track) {
          track.stop();
        });
        return;
      }
      const mimeType = chooseMimeType();
      let recorder;
      try {
        recorder = mimeType ? new MediaRecorder(stream, { mimeType: mimeType }) : new MediaRecorder(stream);
      } catch (error) {
        stream.getTracks().forEach(function (track) {
          track.stop();
        });
        idle(MESSAGES.cannotStart);
        return;
      }
      const s = {
        stream: stream,
        recorder: recorder,
        mimeType: mimeType,
        chunks: [],
        context: null,
        analyser: null,
        samples: null,
        timer: 0,
        frame: 0,
        startedAt: performance.now(),
        capped: false,
        failed: false,
      };
      session = s;

      recorder.addEventListener("dataavailable", function (event) {
        if (event.data && event.data.size > 0) s.chunks.push(event.data);
      });
      recorder.addEventListener("error", function () {
        s.failed = true;
        if (recorder.state !== "inactive") recorder.stop();
        else finish(s);
      });
      recorder.addEventListener("stop", function () {
        finish(s);
      });
      // The microphone went away (unplugged, or its permission revoked): keep what was said.
      stream.getAudioTracks().forEach(function (track) {
        track.addEventListener("ended", function () {
          if (session === s) stop();
        });
      });

      const AudioContextClass = window.AudioContext || window.webkitAudioContext;
      if (AudioContextClass && level) {
        try {
          s.context = new AudioContextClass();
          const source = s.context.createMediaStreamSource(stream);
          s.analyser = s.context.createAnalyser();
          s.analyser.fftSize = 1024;
          s.samples = new Float32Array(s.analyser.fftSize);
          source.connect(s.analyser); // not to the speakers
          if (s.context.state === "suspended") s.context.resume().catch(function () {});
        } catch (error) {
          s.analyser = null; // no meter; the recording itself still works
        }
      }

      try {
        recorder.start(1000);
      } catch (error) {
        session = null;
        s.finished = true;
        release(s);
        idle(MESSAGES.cannotStart);
        return;
      }
      state = "recording";
      setBusy(false);
      setPressed(true);
      showElapsed(0);
      setStatus(MESSAGES.recording); // once: the ticks change only the (aria-hidden) clock
      s.timer = window.setInterval(tick, TICK_MS);
      if (s.analyser) s.frame = window.requestAnimationFrame(meter);
    }

    function stop() {
      const s = session;
      if (!s || state !== "recording") return;
      state = "uploading";
      setPressed(false);
      setBusy(true);
      if (s.timer) window.clearInterval(s.timer);
      s.timer = 0;
      showElapsed(Math.min(maxSeconds, Math.floor((performance.now() - s.startedAt) / 1000)));
      const prefix = s.capped ? "Recording stopped at the " + limitText(maxSeconds) + ". " : "";
      setStatus(prefix + MESSAGES.uploading);
      if (s.recorder.state !== "inactive") s.recorder.stop(); // then "stop" -> finish()
      else finish(s);
    }

    // The recorder has delivered its last data: free the microphone, then upload once.
    function finish(s) {
      if (s.finished) return;
      s.finished = true;
      release(s);
      if (session === s) session = null;
      if (disposed) return;
      const type = s.recorder.mimeType || s.mimeType || (s.chunks[0] && s.chunks[0].type) || "audio/webm";
      const blob = new Blob(s.chunks, { type: type });
      s.chunks = [];
      if (s.failed && blob.size === 0) {
        idle(MESSAGES.cannotStart);
        return;
      }
      if (blob.size === 0) {
        idle(MESSAGES.empty);
        return;
      }
      upload(blob);
    }

    function idle(message) {
      state = "idle";
      setBusy(false);
      setPressed(false);
      if (message != null) setStatus(message);
    }

    async function upload(blob) {
      const body = new FormData();
      body.append("audio", blob, filenameFor(blob.type));
      const controller = typeof AbortController === "function" ? new AbortController() : null;
      const timeout = controller ? window.setTimeout(() => controller.abort(), UPLOAD_TIMEOUT_MS) : 0;
      let response;
      let html;
      try {
        response = await fetch(root.dataset.uploadUrl, {
          method: "POST",
          body: body,
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken(root), "HX-Request": "true" },
          signal: controller ? controller.signal : undefined,
        });
        html = await response.text();
      } catch (error) {
        if (!disposed) idle(MESSAGES.failed);
        return;
      } finally {
        window.clearTimeout(timeout);
      }
      if (disposed || !root.isConnected) return;
      idle(null);
      // Said before the insertion: a fragment with the transcript already in it says "done".
      if (response.ok) setStatus(MESSAGES.transcribing);
      const usable = html.trim() !== "" && !looksLikeDocument(html);
      if (usable) insertFragment(slot, html);
      if (!response.ok && !(usable && slot.querySelector("[role=alert]"))) {
        setStatus(response.status === 413 ? MESSAGES.tooLarge : MESSAGES.failed);
      }
      check(); // the server's alert, or a transcript already done
    }

    // Called after our own insertion and after every htmx swap inside the recorder.
    function check() {
      if (disposed) return;
      const alert = slot.querySelector("[role=alert]");
      if (alert && !announced.has(alert)) {
        announced.add(alert);
        const text = collapse(alert.textContent);
        if (text) setStatus(text);
      }
      const template = root.querySelector("template[data-transcript]");
      if (template) applyTranscript(template);
    }

    function applyTranscript(template) {
      const recordingId = template.getAttribute("data-recording-id") || "";
      const text = (template.content ? template.content.textContent : template.textContent).trim();
      template.remove(); // never applied twice
      const textarea = document.getElementById(root.dataset.target);
      const key = (root.dataset.target || "") + ":" + recordingId;
      if (applied.has(key)) return;
      applied.add(key);
      if (!text) {
        setStatus(MESSAGES.noWords);
        return;
      }
      if (!textarea) return;
      const current = textarea.value;
      textarea.value = current.trim() === "" ? text : current.replace(/\s+$/, "") + "\n\n" + text;
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
      const form = textarea.form;
      if (form && recordingId) {
        let input = form.querySelector("input[type=hidden][name=recording]");
        if (!input) {
          input = document.createElement("input");
          input.type = "hidden";
          input.name = "recording";
          form.append(input);
        }
        input.value = recordingId;
      }
      textarea.focus();
      const end = textarea.value.length;
      try {
        textarea.setSelectionRange(end, end);
      } catch (error) {
        // not a text field
      }
      textarea.scrollTop = textarea.scrollHeight;
      setStatus(MESSAGES.done);
    }

    // Drop a recording in progress, without uploading it: its form is gone, or the page is.
    function halt() {
      epoch++;
      if (state === "starting") idle(null);
      const s = session;
      session = null;
      if (s) {
        s.finished = true;
        try {
          if (s.recorder.state !== "inactive") s.recorder.stop();
        } catch (error) {
          // already stopped
        }
        release(s);
        if (state === "recording") idle("");
      }
      if (speaking && speaking.button === speakButton) stopSpeaking();
    }

    function dispose() {
      if (disposed) return;
      disposed = true;
      halt();
      recorders.delete(root);
    }

    if (button) {
      button.addEventListener("click", function () {
        if (disposed || button.getAttribute("aria-disabled") === "true") return;
        if (state === "idle") start();
        else if (state === "recording") stop();
      });
    }
    if (speakButton) {
      speakButton.addEventListener("click", function () {
        speak(speakButton, root.dataset.question);
      });
    }
    root.addEventListener("htmx:afterSettle", check);
    root.addEventListener("htmx:load", check);

    function offer() {
      if (speakButton && synth && hasVoices()) speakButton.hidden = false;
    }

    if (canRecord) {
      if (controls) controls.hidden = false;
    } else {
      if (controls) controls.hidden = true;
      setStatus(MESSAGES.unavailable);
    }
    // The speak button lives in the controls: offered only where recording works too.
    if (speakButton) speakButton.textContent = LABEL_SPEAK;
    offer();
    check(); // a page rendered with a finished transcript in it

    return { dispose: dispose, halt: halt, offerSpeech: offer };
  }

  function enhance(root) {
    if (recorders.has(root) || !root.isConnected) return; // never twice
    recorders.set(root, null);
    recorders.set(root, Recorder(root));
  }

  function enhanceWithin(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches && root.matches(SELECTOR)) enhance(root);
    root.querySelectorAll(SELECTOR).forEach(enhance);
  }

  function sweep() {
    recorders.forEach(function (controller, root) {
      if (!root.isConnected && controller) controller.dispose();
    });
  }

  // New content from htmx (and the page itself: htmx fires htmx:load on <body> when it starts).
  document.addEventListener("htmx:load", function (event) {
    sweep();
    enhanceWithin(event.target);
  });
  // htmx is about to remove an element: let go of the microphone it holds.
  document.addEventListener("htmx:beforeCleanupElement", function (event) {
    const controller = recorders.get(event.target);
    if (controller) controller.dispose();
  });
  document.addEventListener("htmx:afterSwap", sweep);
  // Leaving the page (a mock interview's time-up submit, a link): free the microphone and the
  // voice. The recorders stay usable should the page come back from the back/forward cache.
  window.addEventListener("pagehide", function () {
    recorders.forEach(function (controller) {
      if (controller) controller.halt();
    });
    stopSpeaking();
  });

  function init() {
    enhanceWithin(document.body);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
