// rlhfkit annotate: the annotator's page. Plain JS, no build step.
//
// Model text is untrusted: everything that comes from the server is put into the page with
// textContent (never as HTML), so markup in a response is shown as text and never runs.
"use strict";

const TOKEN_KEY = "rlhfkit.token";
const ROLE_NAMES = { user: "User", assistant: "Assistant", system: "System" };
const PREFERENCES = ["a_better", "b_better", "ranking"];

const state = {
  token: null,
  task: null, // {item_id, turns, document: {text, title, source} | null, responses: [{letter, text}]}
  label: null,
  strength: null,
  ranking: [], // letters, best first
  started: 0,
  busy: false,
};

// Bidirectional controls (right-to-left overrides, embeddings, isolates, marks) can make model text
// read differently from what it is; they are shown as visible [U+XXXX] markers instead of acting.
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

function visibleText(text) {
  return text.replace(BIDI_CONTROLS, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

// `$`, `el`, `setStatus`, `ROOT` and `authorisedFetch` come from common.js (loaded first).

async function api(method, path, body) {
  const response = await authorisedFetch(state.token, method, path, body);
  if (response.status === 401) {
    logout("Your token was not accepted. Check it and sign in again.");
    throw new Error("unauthorised");
  }
  let data = null;
  if (response.status !== 204) {
    data = await response.json().catch(() => null);
  }
  return { status: response.status, data };
}

// --- signing in ---------------------------------------------------------------------------------

function show(id, visible) {
  $(id).hidden = !visible;
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  show("workspace", false);
  show("progress", false);
  show("guidelines-toggle", false);
  show("logout", false);
  show("login", true);
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function login(token) {
  state.token = token;
  const { status, data } = await api("GET", "/api/me").catch(() => ({ status: 0 }));
  if (status !== 200) {
    if (status === 403) logout("That is an admin token; this page is for annotators.");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("project-name").textContent = data.project.name;
  $("who").textContent = data.annotator;
  const guidelines = data.project.guidelines || "(no guidelines for this project)";
  $("guidelines-text").textContent = guidelines;
  show("guidelines", Boolean(data.project.guidelines));
  show("login", false);
  show("workspace", true);
  show("progress", true);
  show("guidelines-toggle", true);
  show("logout", true);
  renderProgress(data.progress);
  await loadNext();
}

// --- the item -------------------------------------------------------------------------------------

function renderProgress(p) {
  const total = p.done + p.skipped + p.pending + p.available;
  $("progress-text").textContent =
    `${p.done} labelled · ${p.skipped} skipped · ${p.available + p.pending} left`;
  $("progress-fill").style.width = total ? `${(100 * (p.done + p.skipped)) / total}%` : "0%";
}

async function loadNext() {
  const { status, data } = await api("POST", "/api/next");
  if (status === 204) {
    state.task = null;
    const me = await api("GET", "/api/me");
    if (me.status === 200) renderProgress(me.data.progress);
    show("task", false);
    show("done", true);
    return;
  }
  if (status !== 200) {
    setStatus((data && data.detail) || `could not load an item (${status})`, "error");
    return;
  }
  renderProgress(data.progress);
  renderTask(data);
}

function renderTask(task) {
  state.task = task;
  state.label = null;
  state.strength = null;
  state.ranking = [];
  state.started = performance.now();
  $("note").value = "";
  show("done", false);
  show("task", true);

  renderDocument(task.document);
  const prompt = $("prompt");
  prompt.replaceChildren();
  show("prompt", !task.document); // a document item shows its document in place of the prompt
  const single = task.turns.length === 1 && task.turns[0].role === "user";
  for (const turn of task.turns) {
    const box = el("div", `turn role-${turn.role}`);
    box.append(el("div", "role", single ? "Prompt" : ROLE_NAMES[turn.role] || turn.role));
    box.append(el("div", "content", visibleText(turn.content)));
    prompt.append(box);
  }

  const responses = $("responses");
  responses.replaceChildren();
  responses.className = `k${Math.min(task.responses.length, 4)}`;
  task.responses.forEach((response, n) => {
    const card = el("article", "response");
    card.dataset.letter = response.letter;
    const head = el("header");
    head.append(el("span", "letter", task.responses.length === 1 ? "Response" : response.letter));
    if (task.responses.length > 2) head.append(el("kbd", "", String(n + 1)));
    head.append(el("span", "badge"));
    card.append(head);
    const blank = !response.text.trim();
    card.append(el("div", blank ? "text blank" : "text", visibleText(response.text)));
    responses.append(card);
  });

  const ranking = task.responses.length > 2;
  show("pair-choices", !ranking && !task.question);
  show("rank-choices", ranking && !task.question);
  show("strengths", !task.question);
  renderRating(task.question); // ratings.js: a rating of the one response, or nothing
  setStatus("");
  refresh();
}

// A document (a post or article the responses summarise): its source, title and paragraphs (split at
// blank lines; single line breaks are kept), all as text, in a box that scrolls when it is long.
function renderDocument(doc) {
  show("document", Boolean(doc));
  const body = $("document-text");
  body.replaceChildren();
  body.scrollTop = 0;
  $("document-source").textContent = doc && doc.source ? visibleText(doc.source) : "";
  $("document-title").textContent = doc && doc.title ? visibleText(doc.title) : "";
  if (!doc) return;
  for (const paragraph of doc.text.split(/\n[ \t]*\n/)) {
    if (paragraph.trim()) body.append(el("p", "", visibleText(paragraph.replace(/^\n+|\n+$/g, ""))));
  }
}

function letters() {
  return state.task ? state.task.responses.map((r) => r.letter) : [];
}

// Reflect the current choice in buttons, response cards and the ranking list.
function refresh() {
  for (const button of document.querySelectorAll("[data-label]")) {
    button.classList.toggle("selected", button.dataset.label === state.label);
  }
  for (const button of document.querySelectorAll("[data-strength]")) {
    button.classList.toggle("selected", button.dataset.strength === state.strength);
    button.disabled = !PREFERENCES.includes(state.label);
  }
  const rankOf = new Map(state.ranking.map((letter, r) => [letter, r]));
  for (const card of document.querySelectorAll("#responses .response")) {
    const letter = card.dataset.letter;
    const r = rankOf.get(letter);
    card.classList.toggle("best", r === 0);
    card.classList.toggle("worse", r !== undefined && r > 0);
    card.classList.toggle("tie", state.label === "tie");
    card.classList.toggle("bad", state.label === "both_bad");
    card.querySelector(".badge").textContent = r === undefined ? "" : r === 0 ? "best" : `#${r + 1}`;
  }
  const list = $("ranking");
  list.replaceChildren();
  const unranked = letters().filter((l) => !rankOf.has(l));
  for (const letter of state.ranking.concat(unranked)) {
    const chip = el("li", rankOf.has(letter) ? "chip" : "chip unranked", letter);
    chip.draggable = true;
    chip.dataset.letter = letter;
    list.append(chip);
  }
}

function choose(label) {
  if (!state.task || state.task.question) return;
  state.label = label;
  if (label === "a_better") state.ranking = ["A", "B"];
  else if (label === "b_better") state.ranking = ["B", "A"];
  else state.ranking = [];
  if (!PREFERENCES.includes(label)) state.strength = null;
  refresh();
}

function rankNext(letter) {
  const all = letters();
  if (!state.task || all.length < 3 || !all.includes(letter) || state.ranking.includes(letter)) return;
  if (state.label !== "ranking") {
    state.label = "ranking";
    state.ranking = [];
  }
  state.ranking.push(letter);
  if (state.ranking.length === all.length - 1) {
    state.ranking.push(all.find((l) => !state.ranking.includes(l)));
  }
  refresh();
}

function resetRanking() {
  state.ranking = [];
  if (state.label === "ranking") state.label = null;
  refresh();
}

// --- drag to rank ---------------------------------------------------------------------------------

let dragged = null;

function setupDrag() {
  const list = $("ranking");
  list.addEventListener("dragstart", (event) => {
    dragged = event.target.closest("li");
    if (event.dataTransfer) event.dataTransfer.setData("text/plain", dragged ? dragged.dataset.letter : "");
  });
  list.addEventListener("dragover", (event) => event.preventDefault());
  list.addEventListener("drop", (event) => {
    event.preventDefault();
    const target = event.target.closest("li");
    if (!dragged || !target || target === dragged) return;
    const order = [...list.children].map((li) => li.dataset.letter);
    const from = order.indexOf(dragged.dataset.letter);
    const to = order.indexOf(target.dataset.letter);
    order.splice(to, 0, order.splice(from, 1)[0]);
    state.label = "ranking";
    state.ranking = order; // a drop fixes the whole order
    dragged = null;
    refresh();
  });
}

// --- sending ------------------------------------------------------------------------------------------

async function submit() {
  if (!state.task || state.busy) return;
  if (state.task.question) {
    const answer = ratingAnswer(); // ratings.js
    if (answer.error) return setStatus(answer.error, "error");
    const duration_ms = Math.round(performance.now() - state.started);
    return send({ item_id: state.task.item_id, rating: answer.rating, note: $("note").value, duration_ms });
  }
  if (!state.label) {
    setStatus(letters().length > 2 ? "Rank the responses first (1, 2, 3 ...)." : "Choose an answer first.", "error");
    return;
  }
  if (state.label === "ranking" && state.ranking.length !== letters().length) {
    setStatus("Finish the ranking first.", "error");
    return;
  }
  if (PREFERENCES.includes(state.label) && !state.strength) {
    setStatus("Choose a strength: q slight, w clear, e strong.", "error");
    return;
  }
  const body = {
    item_id: state.task.item_id,
    label: state.label,
    strength: state.strength,
    ranking: state.label === "ranking" ? state.ranking : null,
    note: $("note").value,
    duration_ms: Math.round(performance.now() - state.started),
  };
  await send(body);
}

async function send(body) {
  state.busy = true;
  try {
    const { status, data } = await api("POST", "/api/annotations", body);
    if (status === 200) {
      setStatus("Saved.", "ok");
      await loadNext();
      setStatus("Saved.", "ok");
    } else if (status === 409) {
      setStatus(data.detail, "error");
      await loadNext();
    } else {
      setStatus((data && data.detail && JSON.stringify(data.detail)) || `error ${status}`, "error");
    }
  } finally {
    state.busy = false;
  }
}

async function skip() {
  if (!state.task || state.busy) return;
  state.busy = true;
  try {
    const { status, data } = await api("POST", "/api/skip", { item_id: state.task.item_id });
    if (status === 200 || status === 409) await loadNext();
    setStatus(status === 200 ? "Skipped." : (data && data.detail) || `error ${status}`, status === 200 ? "ok" : "error");
  } finally {
    state.busy = false;
  }
}

function toggleGuidelines() {
  show("guidelines", $("guidelines").hidden);
}

// --- keyboard ---------------------------------------------------------------------------------------

const KEYS = {
  a: () => letters().length === 2 && choose("a_better"),
  b: () => letters().length === 2 && choose("b_better"),
  t: () => choose("tie"),
  x: () => choose("both_bad"),
  q: () => PREFERENCES.includes(state.label) && ((state.strength = "slight"), refresh()),
  w: () => PREFERENCES.includes(state.label) && ((state.strength = "clear"), refresh()),
  e: () => PREFERENCES.includes(state.label) && ((state.strength = "strong"), refresh()),
  n: () => $("note").focus(),
  s: () => skip(),
  g: () => toggleGuidelines(),
  Enter: () => submit(),
  Backspace: () => resetRanking(),
};

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest && event.target.closest("input, textarea");
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if ($("workspace").hidden) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (ratingKey(key)) {
    event.preventDefault(); // ratings.js took it
    return;
  }
  if (/^[1-9]$/.test(key)) {
    rankNext(String.fromCharCode(64 + Number(key)));
    event.preventDefault();
    return;
  }
  const action = KEYS[key];
  if (action) {
    event.preventDefault();
    action();
  }
}

// --- start --------------------------------------------------------------------------------------------

function start() {
  document.addEventListener("keydown", onKey);
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("token").value.trim());
  });
  $("logout").addEventListener("click", () => logout(""));
  $("guidelines-toggle").addEventListener("click", toggleGuidelines);
  for (const button of document.querySelectorAll("[data-label]")) {
    button.addEventListener("click", () => choose(button.dataset.label));
  }
  for (const button of document.querySelectorAll("[data-strength]")) {
    button.addEventListener("click", () => {
      state.strength = button.dataset.strength;
      refresh();
    });
  }
  $("rank-reset").addEventListener("click", resetRanking);
  $("responses").addEventListener("click", (event) => {
    const card = event.target.closest(".response");
    if (card && letters().length > 2) rankNext(card.dataset.letter);
  });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  setupDrag();
  setupRating();
  signInAtStart(TOKEN_KEY, login, logout);
}

start();
