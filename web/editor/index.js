// The page's code editor: CodeMirror 6, bundled by build.py (esbuild) into dist/editor.js.
//
// One editor view shows one file at a time; each file keeps its own editor state, so undo
// history, selection and scroll position survive switching between files. Python gets the
// Lezer Python grammar; WGSL a small stream tokenizer defined here (keywords, types,
// attributes, built-in functions, numbers, comments).
//
//   const ed = createEditor(parent, { onChange(path, text), onRun(), onReadOnlyKey(path) });
//   ed.open(path, text, { language: "python" | "wgsl", readOnly });
//   ed.text(path) ed.replace(path, text) ed.setReadOnly(path, flag) ed.gotoLine(line) ed.focus()

import { EditorState, Compartment, StateEffect, StateField, Prec } from "@codemirror/state";
import {
  EditorView, Decoration, keymap, lineNumbers, highlightActiveLineGutter, highlightSpecialChars,
  drawSelection, highlightActiveLine, dropCursor, rectangularSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  StreamLanguage, HighlightStyle, syntaxHighlighting, indentOnInput, bracketMatching,
  foldGutter, foldKeymap, indentUnit,
} from "@codemirror/language";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { python } from "@codemirror/lang-python";
import { tags as t } from "@lezer/highlight";

// For automation: EditorView.findFromDOM(document.querySelector("#editor")).state.doc
export { EditorView };

// ---------------------------------------------------------------- WGSL

const WGSL_KEYWORDS = new Set((
  "alias break case const const_assert continue continuing default diagnostic discard else " +
  "enable fn for if let loop override requires return struct switch var while"
).split(" "));
const WGSL_TYPES = new Set((
  "bool f16 f32 i32 u32 vec2 vec3 vec4 mat2x2 mat2x3 mat2x4 mat3x2 mat3x3 mat3x4 mat4x2 " +
  "mat4x3 mat4x4 array atomic ptr sampler texture_2d texture_storage_2d vec2f vec3f vec4f " +
  "vec2u vec3u vec4u vec2i vec3i vec4i"
).split(" "));
const WGSL_ADDRESS = new Set("function private workgroup uniform storage read write read_write".split(" "));

const wgsl = StreamLanguage.define({
  name: "wgsl",
  startState: () => ({ comment: 0 }),
  token(stream, state) {
    if (state.comment > 0) { // block comments nest in WGSL
      while (!stream.eol()) {
        if (stream.match("/*")) state.comment++;
        else if (stream.match("*/")) { if (--state.comment === 0) break; }
        else stream.next();
      }
      return "blockComment";
    }
    if (stream.eatSpace()) return null;
    if (stream.match("//")) { stream.skipToEnd(); return "lineComment"; }
    if (stream.match("/*")) { state.comment = 1; return "blockComment"; }
    if (stream.match(/^@[A-Za-z_]\w*/)) return "meta";
    if (stream.match(/^(0[xX][0-9a-fA-F]+|\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)[fhiu]?/)) return "number";
    if (stream.match(/^[A-Za-z_]\w*/)) {
      const word = stream.current();
      if (word === "true" || word === "false") return "bool";
      if (WGSL_KEYWORDS.has(word)) return "keyword";
      if (WGSL_TYPES.has(word)) return "typeName";
      if (WGSL_ADDRESS.has(word)) return "modifier";
      if (stream.match(/^\s*(?=\()/, false)) return "variableName.function";
      return "variableName";
    }
    if (stream.match(/^[-+*/%&|^!<>=~]+/)) return "operator";
    stream.next();
    return "punctuation";
  },
  languageData: { commentTokens: { line: "//", block: { open: "/*", close: "*/" } } },
});

// ---------------------------------------------------------------- looks

const highlight = HighlightStyle.define([
  { tag: [t.keyword, t.controlKeyword, t.definitionKeyword, t.moduleKeyword, t.operatorKeyword], color: "#8e24aa" },
  { tag: [t.comment, t.lineComment, t.blockComment], color: "#6a737d", fontStyle: "italic" },
  { tag: [t.string, t.special(t.string)], color: "#1b7a3a" },
  { tag: [t.number, t.bool, t.null, t.atom], color: "#b35c00" },
  { tag: [t.typeName, t.className, t.standard(t.variableName)], color: "#0b6e99" },
  { tag: [t.function(t.variableName), t.function(t.propertyName), t.definition(t.function(t.variableName))], color: "#2f5fd0" },
  { tag: [t.meta, t.modifier, t.self], color: "#a0522d" },
  { tag: t.definition(t.variableName), color: "#1d1d1f" },
]);

const theme = EditorView.theme({
  "&": { height: "100%", fontSize: "13px", backgroundColor: "#fff" },
  ".cm-scroller": { fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace', lineHeight: "1.45" },
  ".cm-gutters": { backgroundColor: "#f7f7f5", borderRight: "1px solid #dcdcd8", color: "#9a9a9f" },
  ".cm-activeLine": { backgroundColor: "#f4f6fb" },
  ".cm-activeLineGutter": { backgroundColor: "#e8ecf7" },
  "&.cm-focused": { outline: "2px solid #2f5fd055" },
  ".cm-flash": { backgroundColor: "#ffe9a8" },
});

// A line lit up for a moment when the "How it works" panel or a traceback jumps to it.
const flashEffect = StateEffect.define();
const flashField = StateField.define({
  create: () => Decoration.none,
  update(deco, tr) {
    deco = deco.map(tr.changes);
    for (const e of tr.effects) {
      if (e.is(flashEffect)) {
        deco = e.value === null ? Decoration.none
          : Decoration.set([Decoration.line({ class: "cm-flash" }).range(e.value)]);
      }
    }
    return deco;
  },
  provide: (f) => EditorView.decorations.from(f),
});

// ---------------------------------------------------------------- the editor

export function createEditor(parent, { onChange, onRun, onReadOnlyKey } = {}) {
  const states = new Map(); // path -> EditorState
  const readOnly = new Compartment();
  const language = new Compartment();
  let current = null;
  let flashTimer = null;

  function extensions(path, lang, ro) {
    return [
      lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), foldGutter(),
      drawSelection(), dropCursor(), rectangularSelection(), indentOnInput(), bracketMatching(),
      closeBrackets(), highlightActiveLine(), highlightSelectionMatches(),
      EditorState.tabSize.of(4), indentUnit.of("    "),
      syntaxHighlighting(highlight),
      language.of(lang === "wgsl" ? wgsl : python()),
      readOnly.of(EditorState.readOnly.of(ro)),
      // Ctrl/Cmd+Enter runs; it comes before the keymaps that would insert a line.
      Prec.highest(keymap.of([{ key: "Mod-Enter", run: () => { onRun && onRun(); return true; } }])),
      keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap,
        ...foldKeymap, indentWithTab]),
      EditorView.updateListener.of((u) => {
        if (u.docChanged && onChange) onChange(path, u.state.doc.toString());
      }),
      EditorView.domEventHandlers({
        keydown(e, view) {
          // Typing into a read-only file: say how to edit it.
          if (view.state.readOnly && onReadOnlyKey && e.key.length === 1 && !e.ctrlKey && !e.metaKey) {
            onReadOnlyKey(path);
          }
          return false;
        },
      }),
      flashField, theme,
    ];
  }

  const view = new EditorView({ parent, state: EditorState.create({ doc: "" }) });

  function save() {
    if (current !== null) states.set(current, view.state);
  }

  return {
    view,
    get path() { return current; },

    /** Show `path`; `text` is used the first time only (later its own state comes back). */
    open(path, text, { language: lang = "python", readOnly: ro = false } = {}) {
      save();
      let state = states.get(path);
      if (!state) {
        state = EditorState.create({ doc: text, extensions: extensions(path, lang, ro) });
      }
      current = path;
      view.setState(state);
      // A new state starts from CodeMirror's estimate of its lines' heights (14 px), and
      // CodeMirror measures them only while the editor is in the window, or when it has a
      // scroll position to set. The gutter is laid out from those heights: a file shown while
      // the editor is below the fold (as the page opens) kept numbers packed tighter than its
      // lines until the user scrolled there (a full-page screenshot showed it). Setting the
      // editor's own scroll position (a snapshot: it never scrolls the page) makes the next
      // measure read the real heights, wherever the editor is.
      view.dispatch({ effects: view.scrollSnapshot() });
      this.setReadOnly(path, ro);
    },

    has(path) { return states.has(path) || current === path; },

    text(path = current) {
      if (path === current) return view.state.doc.toString();
      const s = states.get(path);
      return s ? s.doc.toString() : null;
    },

    /** Replace a file's whole text (an undoable change). */
    replace(path, text) {
      if (path === current) {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
      } else if (states.has(path)) {
        const s = states.get(path);
        states.set(path, s.update({ changes: { from: 0, to: s.doc.length, insert: text } }).state);
      }
    },

    setReadOnly(path, ro) {
      const effects = readOnly.reconfigure(EditorState.readOnly.of(ro));
      if (path === current) view.dispatch({ effects });
      else if (states.has(path)) states.set(path, states.get(path).update({ effects }).state);
    },

    readOnly() { return view.state.readOnly; },

    /** Put the cursor on a line (1-based), scroll it into the middle and light it up. */
    gotoLine(line) {
      const doc = view.state.doc;
      const n = Math.min(Math.max(1, line), doc.lines);
      const l = doc.line(n);
      view.dispatch({
        selection: { anchor: l.from },
        effects: [EditorView.scrollIntoView(l.from, { y: "center" }), flashEffect.of(l.from)],
      });
      clearTimeout(flashTimer);
      flashTimer = setTimeout(() => view.dispatch({ effects: flashEffect.of(null) }), 1800);
    },

    focus() { view.focus(); },
  };
}
