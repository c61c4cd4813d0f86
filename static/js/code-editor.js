// Code questions: a CodeMirror editor over each <textarea data-code-language="python|javascript|sql">.
// The textarea stays the source of truth: every change is written back into it, so a normal form
// submit, an htmx hx-post and a page without JavaScript all send the same field. Needs
// static/js/vendor/codemirror.js (`make editor`) loaded before it; both with the CSP nonce.
(function () {
  "use strict";

  const CM = window.MockroomCodeMirror;
  if (!CM || window.MockroomCodeEditor) return; // no bundle, or this script loaded twice

  // CodeMirror injects its styles as <style> elements: the page's CSP admits them by this nonce.
  const script = document.currentScript;
  const nonce = (script && script.nonce) || "";

  const LANGUAGES = { python: CM.python, javascript: CM.javascript, sql: CM.sql };
  const SELECTOR = "textarea[data-code-language]";
  const HINT = "Tab indents. To leave the editor, press Escape then Tab.";

  // Colours from app.css, each at least 4.5:1 on the editor's white and its active-line tint.
  const highlightStyle = CM.HighlightStyle.define([
    { tag: [CM.tags.keyword, CM.tags.operatorKeyword, CM.tags.modifier], color: "#2f4ac0" },
    { tag: [CM.tags.string, CM.tags.special(CM.tags.string), CM.tags.regexp], color: "#1f7a4d" },
    { tag: [CM.tags.comment, CM.tags.meta], color: "#5b6275", fontStyle: "italic" },
    { tag: [CM.tags.number, CM.tags.bool, CM.tags.null, CM.tags.atom], color: "#7a3e9d" },
    {
      tag: [CM.tags.function(CM.tags.definition(CM.tags.variableName)), CM.tags.definition(CM.tags.className)],
      color: "#0f5f86",
      fontWeight: "600",
    },
    { tag: [CM.tags.className, CM.tags.typeName, CM.tags.namespace], color: "#7a5300" },
    { tag: CM.tags.invalid, color: "#b42318" },
  ]);

  const editors = new Map(); // textarea -> { view, wrapper, showError }

  const REPLACING = new Set(["insertText", "insertReplacementText", "insertFromPaste"]);

  function replaceSelection(event, view) {
    if (!REPLACING.has(event.inputType)) return false;
    const selection = document.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return false;
    const range = selection.getRangeAt(0);
    const content = view.contentDOM;
    if (!content.contains(range.startContainer) || !content.contains(range.endContainer)) return false;
    const text = event.data != null ? event.data : event.dataTransfer && event.dataTransfer.getData("text/plain");
    if (text == null) return false;
    const a = view.posAtDOM(range.startContainer, range.startOffset);
    const b = view.posAtDOM(range.endContainer, range.endOffset);
    const from = Math.min(a, b);
    event.preventDefault();
    view.dispatch({
      changes: { from: from, to: Math.max(a, b), insert: text },
      selection: { anchor: from + text.length },
      userEvent: "input.type",
      scrollIntoView: true,
    });
    return true;
  }
  let counter = 0;

  function labelText(textarea) {
    const label = textarea.labels && textarea.labels[0];
    const text = label ? label.textContent.replace(/\s+/g, " ").trim() : "";
    return text || textarea.getAttribute("aria-label") || "Code editor";
  }

  function enhance(textarea) {
    if (editors.has(textarea)) return; // never twice
    const language = LANGUAGES[textarea.dataset.codeLanguage];
    if (!language || !textarea.isConnected) return;

    // A copy of the page restored from a snapshot may carry a dead editor: drop it.
    const stale = textarea.nextElementSibling;
    if (stale && stale.classList.contains("code-editor")) stale.remove();

    const base = (textarea.id || "code-" + ++counter) + "-editor";
    const wrapper = document.createElement("div");
    wrapper.className = "code-editor";
    const hint = document.createElement("p");
    hint.className = "code-editor-hint";
    hint.id = base + "-hint";
    hint.textContent = HINT;
    const error = document.createElement("p");
    error.className = "code-editor-error";
    error.id = base + "-error";
    error.setAttribute("role", "alert");
    error.hidden = true;
    wrapper.append(hint);

    const describedBy = [textarea.getAttribute("aria-describedby"), hint.id, error.id];
    const extensions = [
      CM.EditorView.cspNonce.of(nonce),
      CM.EditorView.contentAttributes.of({
        // Already in the tab order (contenteditable); said explicitly so that axe counts the
        // editor's scroller (max-height 36em: longer code scrolls) as having focusable content
        // (scrollable-region-focusable).
        tabindex: "0",
        "aria-label": labelText(textarea),
        "aria-describedby": describedBy.filter(Boolean).join(" "),
      }),
      CM.lineNumbers(),
      CM.highlightActiveLineGutter(),
      CM.highlightActiveLine(),
      CM.highlightSpecialChars(),
      CM.history(),
      CM.indentOnInput(),
      CM.indentUnit.of("    "),
      CM.bracketMatching(),
      CM.syntaxHighlighting(highlightStyle),
      language(),
      // Tab indents; CodeMirror itself lets Escape then Tab (or Ctrl-M) move focus out instead.
      CM.keymap.of([CM.indentWithTab, ...CM.defaultKeymap, ...CM.historyKeymap]),
      // Text replacing a selection (a programmatic fill, an autocorrection across lines) is
      // applied by CodeMirror itself: Chrome's own editing would wrap what it merges in
      // style attributes, which the strict CSP refuses (and CodeMirror redraws anyway).
      CM.EditorView.domEventHandlers({ beforeinput: replaceSelection }),
      CM.EditorView.updateListener.of(function (update) {
        if (!update.docChanged) return;
        textarea.value = update.state.doc.toString();
        textarea.dispatchEvent(new Event("input", { bubbles: true }));
        showError("");
      }),
    ];
    if (textarea.maxLength > 0) {
      const max = textarea.maxLength;
      extensions.push(CM.EditorState.changeFilter.of((tr) => tr.newDoc.length <= max));
    }
    if (textarea.readOnly || textarea.disabled) {
      extensions.push(CM.EditorState.readOnly.of(true));
    }

    textarea.after(wrapper);
    const view = new CM.EditorView({
      state: CM.EditorState.create({ doc: textarea.value, extensions: extensions }),
      parent: wrapper,
    });
    wrapper.append(error);
    textarea.hidden = true;

    function showError(message) {
      if (error.textContent === message) return;
      error.textContent = message;
      error.hidden = !message;
    }
    editors.set(textarea, { view: view, wrapper: wrapper, showError: showError });
    if (textarea.autofocus) view.focus();
  }

  function destroy(textarea, later) {
    const editor = editors.get(textarea);
    if (!editor) return;
    editors.delete(textarea);
    editor.view.destroy();
    // During htmx's cleanup, which walks the live list of children, remove nothing until it ends.
    if (later) queueMicrotask(() => editor.wrapper.remove());
    else editor.wrapper.remove();
  }

  function enhanceWithin(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches && root.matches(SELECTOR)) enhance(root);
    root.querySelectorAll(SELECTOR).forEach(enhance);
  }

  // Editors whose textarea left the page by other means than an htmx swap.
  function sweep() {
    editors.forEach(function (editor, textarea) {
      if (!textarea.isConnected) destroy(textarea);
    });
  }

  // New content from htmx (and the page itself: htmx fires htmx:load on <body> when it starts).
  document.addEventListener("htmx:load", function (event) {
    sweep();
    enhanceWithin(event.target);
  });
  // htmx is about to remove an element: free its editor (listeners, observers) with it.
  document.addEventListener("htmx:beforeCleanupElement", function (event) {
    if (editors.has(event.target)) destroy(event.target, true);
  });
  document.addEventListener("htmx:afterSwap", sweep);

  // The label names the editor: a click on it focuses the editor, not the hidden textarea.
  document.addEventListener("click", function (event) {
    const label = event.target instanceof Element && event.target.closest("label[for]");
    const textarea = label && document.getElementById(label.htmlFor);
    const editor = textarea && editors.get(textarea);
    if (!editor) return;
    event.preventDefault();
    editor.view.focus();
  });

  // A hidden textarea cannot show the browser's "fill out this field": say it under the editor.
  document.addEventListener(
    "invalid",
    function (event) {
      const editor = editors.get(event.target);
      if (!editor) return;
      event.preventDefault();
      editor.showError(event.target.validationMessage);
      editor.view.focus();
    },
    true
  );

  // form.reset() puts the textarea back to its default: the editor follows.
  document.addEventListener("reset", function (event) {
    const form = event.target;
    window.setTimeout(function () {
      editors.forEach(function (editor, textarea) {
        if (textarea.form !== form) return;
        const doc = editor.view.state.doc;
        if (doc.toString() !== textarea.value) {
          editor.view.dispatch({ changes: { from: 0, to: doc.length, insert: textarea.value } });
        }
      });
    });
  });

  window.MockroomCodeEditor = {
    enhance: enhanceWithin,
    viewOf: function (textarea) {
      const editor = editors.get(textarea);
      return editor ? editor.view : null;
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      enhanceWithin(document);
    });
  } else {
    enhanceWithin(document);
  }
})();
