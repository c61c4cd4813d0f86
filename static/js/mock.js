// A mock interview's countdown: the time left for the open answer, announced to screen readers
// once at one minute left (a polite live region: focus never moves), and the answer submitted as
// it stands when the time runs out. The server keeps the time too: it takes an answer until the
// deadline plus a few seconds of grace, and records the time used.
(function () {
  "use strict";

  function format(seconds) {
    const m = Math.floor(seconds / 60);
    const s = seconds % 60;
    return m + ":" + String(s).padStart(2, "0");
  }

  function start(box) {
    const clock = box.querySelector("[data-countdown-clock]");
    const announce = box.querySelector("[data-countdown-announce]");
    const form = document.getElementById(box.dataset.form);
    const total = Math.max(0, Number(box.dataset.secondsLeft) || 0);
    const warnAt = Number(box.dataset.warnAt) || 60;
    const end = performance.now() + total * 1000;
    let warned = total <= warnAt; // a page opened with less than a minute left says nothing
    let submitted = false;
    let shown = -1;

    if (form) {
      form.addEventListener("submit", function () {
        submitted = true;
        const button = form.querySelector("button[type=submit]");
        if (button) button.disabled = true;
      });
    }

    function tick() {
      const left = Math.max(0, Math.ceil((end - performance.now()) / 1000));
      if (left !== shown) {
        shown = left;
        clock.textContent = format(left);
      }
      if (!warned && left <= warnAt) {
        warned = true;
        box.classList.add("is-low");
        announce.textContent = "One minute left";
      }
      if (left === 0) {
        window.clearInterval(timer);
        if (!submitted && form) {
          submitted = true;
          announce.textContent = "Time is up: your answer is being submitted as it stands.";
          form.requestSubmit();
        }
      }
    }
    const timer = window.setInterval(tick, 250);
    tick();
  }

  function init() {
    document.querySelectorAll("[data-countdown]").forEach(start);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
