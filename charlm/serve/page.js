// What charlm's two pages (the serve page, page.html, and the exported page, charlm/export/page.html)
// do alike, inlined into each as page.css is, so that they say the same thing the same way. The exported
// page's worker runs it too, ahead of sampler.js (which names characters as nameUnseen does): nothing at
// its top level touches the document, which a worker has not.
"use strict";

// The status line (#status): what the page is doing, or what went wrong (`isError`, in the error colour).
function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// A setting's number box as a number within the box's own min and max, a whole one where its step is 1
// (a length): an empty box, one out of range or a length of 2.5 is refused by name, in the boxes' words,
// before anything is written (read as a number, an empty box is 0: greedy, or no text; 2.5 would meet the
// sampler's words).
function checkSetting(name, caption) {
  const box = document.getElementById(name), value = box.valueAsNumber, whole = +box.step === 1;
  if (withinBox(box, value)) return;
  const range = `from ${box.min}${box.max ? ` to ${box.max}` : " up"}${box.value ? `, not ${box.value}` : ""}`;
  throw Object.assign(new Error(`${caption}: give a ${whole ? "whole " : ""}number ${range}`), { param: name });
}

// Whether a box takes `value`: within its min and max, and a whole number where its step is 1 (a length),
// for a setting typed in (`checkSetting`) and one a reload puts back (`applyControlValues`) alike.
function withinBox(box, value) {
  const whole = +box.step !== 1 || Number.isInteger(value);
  return whole && value >= +(box.min || -Infinity) && value <= +(box.max || Infinity);
}

// localStorage refuses what would pass its quota (a few MB per site, filled by the serve page's history):
// what does not fit is not kept, and nothing else stops (a seed that did not fit stopped Generate without a word).
function store(key, value) {
  try { localStorage.setItem(key, value); return true; } catch (e) { return false; }
}

// A page's controls as it keeps them across a reload (and the serve page files them with each text):
// the number of each of `numbers` (a number box with its slider, NAME-range) and the text of each of
// `boxes` (the form row's, or whether a checkbox is ticked), by id.
function controlValues(numbers, boxes) {
  const values = {};
  for (const name of numbers) values[name] = document.getElementById(name).valueAsNumber;  // NaN for an empty box: not saved, refused by checkSetting
  for (const name of boxes) {
    const box = document.getElementById(name);
    values[name] = box.type === "checkbox" ? box.checked : box.value;
  }
  return values;
}
// Kept `values` back in the controls: what a value is not of its control's kind (an older entry's, a
// damaged one), a number out of its box's range (a kept length of -5 made every Generate an error until
// it was retyped; a number box of `boxes`, the serve page's random seed, is kept as its text, "" when empty),
// or a form this page does not offer, leaves the control as it is.
function applyControlValues(values, numbers, boxes) {
  for (const [name, value] of Object.entries(values || {})) {
    const box = document.getElementById(name);
    if (numbers.includes(name) && Number.isFinite(value) && withinBox(box, value)) {
      box.value = value;
      document.getElementById(name + "-range").value = value;
    }
    if (!boxes.includes(name)) continue;
    if (box.type === "checkbox" && typeof value === "boolean") box.checked = value;
    const offered = box.tagName !== "SELECT" || [...box.options].some((o) => o.value === value);
    const fits = box.type !== "number" || value === "" || withinBox(box, Number(value));
    if (box.type !== "checkbox" && typeof value === "string" && offered && fits) box.value = value;
  }
}

// The random seed box (#random_seed) as a request's random seed: null for an empty box (the server or the
// sampler draws one, and tells it), else its whole number, refused by `caption` out of the box's range.
function randomSeedOf(caption) {
  const box = document.getElementById("random_seed");
  if (box.value === "" && !box.validity.badInput) return null;
  checkSetting("random_seed", caption);
  return box.valueAsNumber;
}
// The seed a text was drawn with, shown beside the buttons (#random-seed-used), so that a text one liked can be
// written again: `seed` as text, "" for none (greedy, which draws nothing).
function showRandomSeed(seed) {
  const button = document.getElementById("random-seed-used");
  button.hidden = !seed;
  button.dataset.seed = seed;
  button.textContent = `random seed ${seed}`;
}
// A click on the seed shown pins it in the random seed box, so that Generate writes that text again; `keep`
// keeps the box (the page's saveSettings).
function pinsShownSeed(keep) {
  document.getElementById("random-seed-used").addEventListener("click", (e) => {
    const seed = e.currentTarget.dataset.seed;
    document.getElementById("random_seed").value = seed;
    keep();
    setStatus(`random seed ${seed} set: Generate writes this text again from the same seed and settings; empty the box to draw anew`);
  });
}

// The form row (#form, #template, #acrostic) as a request's fields: {form} or {template}, and {acrostic},
// the ones given. The template's box shows only while "template…" is chosen (showTemplate).
function formFields() {
  const form = document.getElementById("form").value, template = document.getElementById("template").value;
  const acrostic = document.getElementById("acrostic").value, fields = {};
  if (form === "template") {
    if (template) fields.template = template;
  } else if (form) fields.form = form;
  if (acrostic) fields.acrostic = acrostic;
  return fields;
}
function showTemplate() {
  document.getElementById("template").hidden = document.getElementById("form").value !== "template";
}

// What a page shows while it writes a text (`running`) or not. The text region is busy meanwhile, so a
// screen reader reads it once it ends, not each piece as it streams in. A button disabled under the focus
// hands it on (Stop while writing, then Generate): it fell to the page's start, and a keyboard user Tabbed
// from the top again.
function showWriting(running, hasText, hasSeed) {
  const focused = document.activeElement, byId = (id) => document.getElementById(id);
  byId("text").setAttribute("aria-busy", String(running));
  byId("generate").disabled = running;
  byId("stop").disabled = !running;
  byId("continue").disabled = running || !hasText;
  byId("copy").disabled = !hasText && !hasSeed;
  if (focused && focused.disabled) byId(running ? "stop" : "generate").focus();
}

// A page's text (`state`): its seed, the pieces written after it (each a {text}), and whether it is
// being written, which the buttons show (showWriting).
function setRunning(state, running) {
  state.running = running;
  showWriting(running, state.made.length > 0, state.seed !== "");
}
function madeText(state) { return state.made.map((piece) => piece.text).join(""); }
function fullText(state) { return state.seed + madeText(state); }

// Pieces written go into the text box once per animation frame, together: adding each as it came read the
// text's height each time, a layout of the whole text per piece, and a long stream (30,000 characters) kept
// the page from answering for minutes. `place` puts one piece in the box (its span, the page's own).
// `show` shows the pieces waiting now (a text that ends is shown whole at once, in a hidden tab too, where
// no frame comes); `drop` forgets them (a text shown anew). The box stays scrolled to its end unless the
// reader scrolled up from it.
function perFrame(box, place) {
  const waiting = [];
  let frame = 0;
  function show() {
    cancelAnimationFrame(frame);
    frame = 0;
    if (!waiting.length) return;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    for (const piece of waiting) place(piece);  // into the last block (and new ones): the finished ones stay as laid out
    waiting.length = 0;
    if (atBottom) box.scrollTop = box.scrollHeight;
    containFinished(box);
  }
  return {
    add(piece) {
      waiting.push(piece);
      if (!frame) frame = requestAnimationFrame(show);
    },
    show,
    drop() { waiting.length = 0; },
  };
}

// Enter in a setting's box (a number, a slider, the form row's boxes) writes, and Ctrl+Enter in the seed
// (where Enter breaks a line): Enter did nothing outside the seed. Not while an input method composes,
// where Enter picks the characters (春夏秋冬 typed in the acrostic box).
function generateOnEnter(generate) {
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.isComposing) return;
    const box = e.target, inSeed = box.id === "seed";
    if (inSeed ? e.ctrlKey || e.metaKey : box.matches(".controls input, .forms input")) {
      e.preventDefault();
      generate();
    }
  });
}

// The text box (#text) holds its spans (the seed's, then one per piece written) in blocks: a block of
// TEXT_BLOCK characters or more ends at its next line break, and the next span begins a new one. Each frame
// then lays out the last block, not the whole text (a 100,000-character text took 441 ms of layout per 1,000
// characters shown: bench/page_stream.py). A block ends at a line break only, as a paragraph does: one
// ending mid-line would put the next on a line of its own, and copying the text would give a line break there.
const TEXT_BLOCK = 500;
function addToText(box, span) {
  let block = box.lastElementChild;
  if (!block || (block.chars >= TEXT_BLOCK && block.lastChild.textContent.endsWith("\n"))) {
    block = box.appendChild(document.createElement("div"));
    block.className = "block";
    block.chars = 0;
  }
  block.chars += span.textContent.length;
  block.appendChild(span);
}
// The blocks before the last, finished, are contained (.done: page.css) two frames on, once each has been
// laid out whole: off screen, it keeps the height it was last laid out at (contained in part, it would
// keep that).
// Called after a change; a text shown anew meanwhile (render) is left to its own call.
function containFinished(box) {
  const last = box.lastElementChild, finished = last && last.previousElementSibling;
  if (!finished || finished.classList.contains("done")) return;
  requestAnimationFrame(() => requestAnimationFrame(() => {
    for (let block = finished; block && block.isConnected && !block.classList.contains("done"); block = block.previousElementSibling) {
      block.classList.add("done");
    }
  }));
}
// The text box emptied, then `seed` in it: a span a line, so that a long seed (Continue's) is in blocks too.
function showSeed(box, seed) {
  box.textContent = "";
  for (const line of seed.split(/(?<=\n)/)) {
    addToText(box, Object.assign(document.createElement("span"), { className: "seed", textContent: line }));
  }
}

// errors.counted: `1 character`, `4,447 characters`, as charlm writes a count whatever the browser's locale,
// in every line of both pages and of the exported page's sampler.
function counted(count, noun) {
  return `${count.toLocaleString("en-US")} ${count === 1 ? noun : `${noun}s`}`;
}

// The status line once a text ends: what ended it ("done (length)", "stopped"), how many characters
// (code points: a character outside the BMP is one), in how long.
function summary(how, text, seconds) {
  const count = [...text].length, rate = seconds > 0 ? Math.round(count / seconds) : 0;
  return `${how}: ${counted(count, "character")} in ${seconds.toFixed(1)} s (${counted(rate, "character")}/s)`;
}
// The status line once the text is copied, its characters counted as summary counts them.
function copiedNote(text) {
  return `copied ${counted([...text].length, "character")}`;
}

// The ban box, read as `charlm sample --ban` reads its characters (charlm.decoding.bias_vector), for a
// character model's `chars` (in id order) and its Unicode `normalize`: the ids never to draw, [] for an
// empty box. A character the model does not know needs no ban (it never writes it: unwrittenBanNote).
// A ban it cannot follow is an error naming the box ("ban", as the server names logit_bias), and so is one
// that leaves only the unknown symbol (`unknownId`, where the caller has it: the server refuses it itself).
function bannedIds(text, chars, normalize, unknownId = null) {
  const index = new Map([...chars].map((char, id) => [char, id])), named = new Map();  // id -> the character that banned it
  for (const key of banKeys(text)) {
    const char = normalized(key, normalize), count = [...char].length;
    if (neverWritten(char, index)) continue;
    if (count !== 1 && char !== key) {
      const [keyShown, charShown] = toldApart(key, char);
      throw banError(`: ${keyShown} is ${charShown} to this model (its text is ${normalize.toUpperCase()}-normalized); give those characters instead`);
    }
    if (count !== 1) {
      throw banError(`: ${pythonRepr(key)} is ${count} characters to this model (${[...char].map(pythonRepr).join(" ")}); give the one to ban alone (a combining mark stands alone first in the box)`);
    }
    const id = index.get(char);
    if (named.has(id)) throw banError(` gives token ${id} twice (${pythonRepr(named.get(id))} and ${pythonRepr(key)} are the same to this model); give it once`);
    named.set(id, key);
  }
  if (named.size && named.size === index.size) throw banError(" bans every token the model has; leave it at least one to write");
  if (unknownId !== null && !named.has(unknownId) && named.size === index.size - 1) {  // decoding.writes_no_text
    throw banError(" bans every token that writes text (what it leaves, the unknown symbol and control pieces, writes only \ufffd or nothing); leave it at least one to write");
  }
  return [...named.keys()];
}
// The ban box's characters, once each: `\n` and `\t` are a line break and a tab; a combining mark goes
// with the character before it (a decomposed "é" is one).
function banKeys(text) { return new Set(characters(text.replace(/\\n/g, "\n").replace(/\\t/g, "\t"))); }
// decoding.never_written: one character, as the model reads it, that the model has not (`index` of its
// characters). One its normalization makes several ('…', '...' to an nfkc model) it writes.
function neverWritten(char, index) { return [...char].length === 1 && !index.has(char); }
// What `charlm sample --ban` warns of the ban box's characters the model never writes ("" if none), in
// its words (sampler.warn_of_unwritten_bans): taken, but banning them changes nothing, and one may be a
// slip (',' banned where the model writes '，'), named as nameUnseen names it from the model's `hints`.
// Said only of a ban bannedIds took: by the status line (unwrittenBanNote), and by the exported page's
// script API as a console warning.
function unwrittenBanWarning(text, chars, normalize, hints) {
  const known = new Set(chars), held = new Set([...banKeys(text)].map((key) => normalized(key, normalize)));
  const never = [...held].filter((char) => neverWritten(char, known));
  if (!never.length) return "";
  const named = firstNamed(never, (char) => nameUnseen(char, hints, held));
  return `ban: the model never writes ${named}, so banning ${never.length === 1 ? "it" : "them"} changes nothing`;
}
// What charlm warns of a stop text with characters the model never writes (sampler.batch_from_ids), in its
// words, named by the server's field: no sample stops there. "" for none. The exported page's script API says it
// as a console warning, as it says a ban's.
function unwrittenStopWarning(stop, chars, normalize, hints) {
  const never = stop ? unseenCharacters(stop, chars, normalize) : [];
  if (!never.length) return "";
  return `stop ${pythonRepr(stop)}: the model never writes ${firstNamed(never, (c) => nameUnseen(c, hints))}, so no sample stops there`;
}
// What the status line adds of it: " (ban: ...)", or "".
function unwrittenBanNote(text, chars, normalize, hints) {
  const warning = unwrittenBanWarning(text, chars, normalize, hints);
  return warning && ` (${warning})`;
}
// Vocab.name_unseen: a character the model does not know as charlm names it, with the forms of it the
// model writes that are not `banned` ("',' (did you mean '，' or '、'?)"), or, for a model of simplified
// Chinese, that it looks traditional, and of traditional Chinese that it looks simplified (Vocab.other_script).
// `hints` are Vocab.unseen_hints, computed in Python (the exported page's meta.vocab.unseen, /v1/models'
// meta.unseen): one naming for seed errors and ban notes alike.
function nameUnseen(char, hints, banned = new Set()) {
  const known = ((hints && hints.forms[char]) || []).filter((form) => !banned.has(form));
  if (known.length) return `${pythonRepr(char)} (did you mean ${known.map(pythonRepr).join(" or ")}?)`;
  return hints && hints.other_script.includes(char) ? `${pythonRepr(char)} (${hints.other_script_note})` : pythonRepr(char);
}
// unseen.first_named: the first 10 of `chars`, each as `name` names it, then " ..." where there are more.
function firstNamed(chars, name) {
  return chars.slice(0, 10).map(name).join(" ") + (chars.length > 10 ? " ..." : "");
}
// A text as Python's repr writes it, as charlm's messages show characters: 'X', "'", '\n', '\x01' (JSON's
// quoting, which the ban box's errors used, said ''', '\"' and '\u0001' where charlm says "'", '"' and '\x01').
function pythonRepr(text) {
  const escapes = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  const escaped = (c) => {
    if (escapes[c] || c === " " || !/^[\p{C}\p{Z}]$/u.test(c)) return escapes[c] ?? c;  // str.isprintable's
    const code = c.codePointAt(0), [prefix, width] = code < 0x100 ? ["x", 2] : code < 0x10000 ? ["u", 4] : ["U", 8];
    return `\\${prefix}${code.toString(16).padStart(width, "0")}`;
  };
  const body = [...text].map(escaped).join("");
  return text.includes("'") && !text.includes('"') ? `"${body}"` : `'${body.replace(/'/g, "\\'")}'`;
}
// A ban's key and the model's characters for it, quoted (pythonRepr); with their code points where they look alike
// (decoding.told_apart): "'é́' is 'é́'" of an e and two acutes told nothing.
function toldApart(key, char) {
  if (key.normalize("NFC") !== char.normalize("NFC")) return [pythonRepr(key), pythonRepr(char)];
  const points = (s) => [...s].map((c) => "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")).join(" ");
  return [key, char].map((s) => `${pythonRepr(s)} (${points(s)})`);
}
// `text` as a model of Unicode normalization `normalize` (its meta.normalize: none, nfc or nfkc) reads it.
function normalized(text, normalize) { return normalize === "none" ? text : text.normalize(normalize.toUpperCase()); }

// The characters of `text` a character model of `chars` and `normalize` has never seen, once each, as
// the server reads a prompt (normalized whole, then character by character): an nfkc model knows the
// "，" it reads as ",", and a model that does not normalize knows no character it was not trained on.
function unseenCharacters(text, chars, normalize) {
  const known = new Set(chars);
  return [...new Set(normalized(text, normalize))].filter((c) => !known.has(c));
}

// What the serve page's status line adds of a seed's characters the model has never seen (unseenCharacters),
// each named as nameUnseen names it from the model's `hints`: " (the model does not know ...)", or "".
function unseenSeedNote(seed, chars, normalize, hints) {
  const unseen = unseenCharacters(seed, chars, normalize);
  if (!unseen.length) return "";
  const named = firstNamed(unseen, (c) => nameUnseen(c, hints)), one = unseen.length === 1;
  return ` (the model does not know ${named}: it reads ${one ? "it as a character" : "them as characters"} it knows nothing about)`;
}

// A value a script gave, as an error quotes it (the exported page's options: sampler.js's checks too).
function shown(value) { return JSON.stringify(value) ?? String(value); }

function banError(says) { return Object.assign(new Error(`ban${says}`), { param: "ban" }); }

// A text's characters as a reader sees them (decoding.characters): a combining mark (Python's
// unicodedata.combining, a nonzero canonical combining class) stays with the character before it.
function characters(text) {
  const out = [];
  for (const c of text) {
    if (out.length && combining(c)) out[out.length - 1] += c;
    else out.push(c);
  }
  return out;
}
// JavaScript does not say a character's combining class, but normalization acts on it: a mark of a
// nonzero class is moved before U+0345 (class 240, the highest there is).
function combining(c) { return c === "\u0345" || ("\u0345" + c).normalize("NFD")[0] !== "\u0345"; }
