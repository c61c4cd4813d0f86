// Mockroom's page behaviour, on top of htmx. No inline handlers (strict CSP).
(function () {
  "use strict";

  // A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not.
  function uuid4() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  // Each click on "Next question" is a new request with its own idempotency key; the server
  // charges a key at most once. When a click's outcome is unknown (the connection dropped, or
  // an unexpected error), the next click resends the SAME key: if the first attempt was charged,
  // the server returns that question instead of selling another one.
  let retryId = null;

  document.addEventListener("htmx:configRequest", function (event) {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-fresh-request-id")) return;
    const id = retryId || uuid4();
    const input = form.querySelector("input[name=request_id]");
    if (input) input.value = id;
    const params = event.detail.parameters;
    if (typeof params.set === "function") params.set("request_id", id);
    else params.request_id = id;
  });

  // A 409 with Retry-After: the same request is still being prepared (another tab, or an attempt
  // whose server stopped). Ask again with the same key, waiting longer each time, until it is
  // settled: the question (charged once), or "not charged" when its reservation expired. A 429
  // (too many requests) while asking again: ask again once its Retry-After has passed, since
  // the request being prepared may yet be charged and its question must still be shown.
  let pollDelay = 0;
  const MAX_POLL_SECONDS = 30;

  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-fresh-request-id")) return;
    // A question or one of our refusals (4xx, 503 "not charged") settles the request; no
    // answer at all, or an unexpected server error, leaves it to be retried with the same key.
    const xhr = event.detail.xhr;
    const status = xhr ? xhr.status : 0;
    const id = form.querySelector("input[name=request_id]").value;
    const polling = retryId === id;
    const retryAfter =
      (status === 409 || (status === 429 && polling)) && xhr.getResponseHeader("Retry-After");
    if (retryAfter) {
      retryId = id;
      const asked = Number(retryAfter) || 2;
      pollDelay =
        status === 429 ? asked : Math.min(pollDelay ? pollDelay * 2 : asked, MAX_POLL_SECONDS);
      window.setTimeout(function () {
        if (retryId === id) form.requestSubmit();
      }, pollDelay * 1000);
      return;
    }
    pollDelay = 0;
    const settled = status > 0 && (status < 500 || status === 503);
    retryId = settled ? null : id;
  });

  // The same request id again returns the question it already bought. If the page shows that
  // card (a double submit), replace it; if not (the first response was lost), add it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const config = event.detail.requestConfig;
    const form = config && config.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-fresh-request-id")) return;
    if (event.detail.xhr.status !== 200) return;
    const match = /<li class="card question-card" id="(q-\d+)"/.exec(event.detail.serverResponse);
    const shown = match && document.getElementById(match[1]);
    if (shown) {
      event.detail.target = shown;
      event.detail.swapOverride = "outerHTML";
    }
  });

  function showAlert(message) {
    const slot = document.getElementById("question-alert");
    if (!slot) return;
    const alert = document.createElement("div");
    alert.className = "alert alert-error";
    alert.setAttribute("role", "alert");
    alert.tabIndex = -1;
    alert.textContent = message;
    slot.replaceChildren(alert);
    alert.focus();
  }

  document.addEventListener("htmx:responseError", function () {
    showAlert(
      "Something went wrong. Try again: a retry is never charged twice, and your receipts show every charge."
    );
  });
  document.addEventListener("htmx:sendError", function () {
    showAlert(
      "Could not reach Mockroom. Check your connection and try again: a retry is never charged twice."
    );
  });

  // Move focus to a newly delivered question, for keyboard and screen-reader users; on a
  // refusal, to its alert; after an answer, to its error or its feedback (the form that had
  // focus was replaced).
  document.addEventListener("htmx:afterSettle", function (event) {
    const target = document.querySelector("[data-focus-me]");
    if (target) {
      target.removeAttribute("data-focus-me");
      target.focus();
      target.scrollIntoView({ block: "start", behavior: "smooth" });
      return;
    }
    const settled = event.detail.target;
    if (settled && settled.classList.contains("alert-slot")) {
      const alert = settled.querySelector("[role=alert]");
      if (alert) alert.focus();
      return;
    }
    const config = event.detail.requestConfig;
    const form = config && config.elt;
    if (form instanceof HTMLFormElement && form.classList.contains("answer-form")) {
      const card = document.querySelector(form.getAttribute("hx-target"));
      const next = card && (card.querySelector("[role=alert]") || card.querySelector(".feedback"));
      if (next && next !== document.activeElement) next.focus();
    }
  });
})();
