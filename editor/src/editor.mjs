// The CodeMirror 6 pieces that static/js/code-editor.js uses, bundled by `make editor` into
// static/js/vendor/codemirror.js as the global `MockroomCodeMirror`. Only re-exports: the
// editor's behaviour and look live in code-editor.js and app.css.
export { EditorState } from "@codemirror/state";
export {
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export {
  bracketMatching,
  HighlightStyle,
  indentOnInput,
  indentUnit,
  syntaxHighlighting,
} from "@codemirror/language";
export { tags } from "@lezer/highlight";
export { python } from "@codemirror/lang-python";
export { javascript } from "@codemirror/lang-javascript";
export { sql } from "@codemirror/lang-sql";
