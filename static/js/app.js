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
  // charges a key at most once, so a resent request can never cost twice.
  document.addEventListener("htmx:configRequest", function (event) {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-fresh-request-id")) return;
    const id = uuid4();
    const input = form.querySelector("input[name=request_id]");
    if (input) input.value = id;
    const params = event.detail.parameters;
    if (typeof params.set === "function") params.set("request_id", id);
    else params.request_id = id;
  });

  function showAlert(message) {
    const slot = document.getElementById("question-alert");
    if (!slot) return;
    const alert = document.createElement("div");
    alert.className = "alert alert-error";
    alert.setAttribute("role", "alert");
    alert.textContent = message;
    slot.replaceChildren(alert);
  }

  document.addEventListener("htmx:responseError", function () {
    showAlert("Something went wrong. You were not charged. Please try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showAlert("Could not reach Mockroom. Check your connection; you were not charged.");
  });

  // Move focus to a newly delivered question, for keyboard and screen-reader users.
  document.addEventListener("htmx:afterSettle", function () {
    const target = document.querySelector("[data-focus-me]");
    if (!target) return;
    target.removeAttribute("data-focus-me");
    target.focus();
    target.scrollIntoView({ block: "start", behavior: "smooth" });
  });
})();
