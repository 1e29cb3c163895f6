// rlhfkit annotate: the admin page. Plain JS, no build step.
//
// Everything from the server (project and annotator names, tokens, numbers) goes into the page with
// textContent, never as HTML: a name with markup in it shows as text and never runs.
"use strict";

// `$`, `el`, `setStatus`, `ROOT` and `authorisedFetch` come from common.js (loaded first).
const TOKEN_KEY = "rlhfkit.admin-token";

const state = { token: null, overview: null, project: null };

// a project name may contain "/": each segment is encoded, the slashes kept (the routes take a path)
function projectPath(name) {
  return "/api/admin/projects/" + name.split("/").map(encodeURIComponent).join("/");
}

async function api(method, path, body) {
  const response = await authorisedFetch(state.token, method, path, body);
  if (response.status === 401) {
    logout("Your token was not accepted. Check it and sign in again.");
    throw new Error("unauthorised");
  }
  if (response.status === 403) {
    logout("That is an annotator's token; this page is for admins (annotators label at the main page).");
    throw new Error("forbidden");
  }
  return response;
}

async function json(method, path, body) {
  const response = await api(method, path, body);
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error((data && data.detail) || `error ${response.status}`);
  return data;
}

// --- signing in -------------------------------------------------------------------------------------

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  $("admin").hidden = true;
  $("refresh").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function login(token) {
  state.token = token;
  let overview;
  try {
    overview = await json("GET", "/api/admin/overview");
  } catch (err) {
    if (state.token) $("login-error").textContent = String(err.message || err);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("admin").hidden = false;
  $("refresh").hidden = false;
  $("logout").hidden = false;
  renderOverview(overview);
}

// --- projects -------------------------------------------------------------------------------------------

function num(value, digits) {
  return value === null || value === undefined ? "–" : value.toFixed(digits === undefined ? 2 : digits);
}

function cell(row, text, className) {
  row.append(el("td", className || "num", String(text)));
}

function renderOverview(overview) {
  state.overview = overview;
  const body = $("projects").querySelector("tbody");
  body.replaceChildren();
  $("no-projects").hidden = overview.projects.length > 0;
  for (const p of overview.projects) {
    const row = el("tr");
    row.dataset.project = p.name;
    cell(row, p.name, "name");
    cell(row, p.items);
    cell(row, p.labels);
    cell(row, p.complete);
    cell(row, p.open);
    cell(row, p.overlap);
    cell(row, p.controls + (p.controls_mixed_in ? " (mixed in)" : ""));
    cell(row, num(p.control_rate));
    cell(row, `${p.active_annotators} of ${p.annotators} active`);
    row.addEventListener("click", () => selectProject(p.name));
    body.append(row);
  }
  const select = $("export-format");
  select.replaceChildren(...overview.formats.map((f) => el("option", "", f)));
  const names = overview.projects.map((p) => p.name);
  const chosen = names.includes(state.project) ? state.project : names[0];
  if (chosen !== undefined) selectProject(chosen);
  else $("project").hidden = true;
}

async function selectProject(name) {
  state.project = name;
  for (const row of $("projects").querySelectorAll("tbody tr")) {
    row.classList.toggle("selected", row.dataset.project === name);
  }
  let stats;
  try {
    stats = await json("GET", projectPath(name) + "/stats");
  } catch (err) {
    setStatus(String(err.message || err), "error");
    return;
  }
  if (state.project !== name) return; // another project was chosen meanwhile
  $("project").hidden = false;
  $("project-title").textContent = name;
  renderAnnotators(stats.quality);
}

function renderAnnotators(quality) {
  const threshold = quality.min_control_accuracy;
  $("quality-rule").textContent =
    threshold === null
      ? "No minimum control accuracy: nobody is flagged (create-project NAME --update --min-control-accuracy 0.7)."
      : `Flagged: control accuracy below ${num(threshold)} with at least ${quality.min_control_judgements} control judgements.`;
  const body = $("annotators").querySelector("tbody");
  body.replaceChildren();
  for (const [name, r] of Object.entries(quality.annotators)) {
    const row = el("tr", [r.flagged ? "flagged" : "", r.active ? "" : "inactive"].join(" ").trim());
    row.dataset.annotator = name;
    cell(row, name, "name");
    cell(row, r.active ? "yes" : "no", "text");
    cell(row, r.labels);
    cell(row, r.skips);
    cell(row, num(r.median_seconds, 1));
    cell(row, `${num(r.majority.rate)} (${r.majority.judgements})`);
    cell(row, `${num(r.control.accuracy)} (${r.control.judgements})`);
    cell(row, `${num(r.position_bias.rate)} (${r.position_bias.judgements})`);
    row.append(el("td", "flag", r.flagged ? "flagged" : ""));
    const access = el("td", "access");
    access.append(
      button(r.active ? "Deactivate" : "Reactivate", () => act(name, r.active ? "deactivate" : "reactivate")),
      button("Revoke token", () => act(name, "revoke")),
      button("Rotate token", () => act(name, "rotate-token")),
    );
    row.append(access);
    body.append(row);
  }
}

function button(text, onClick) {
  const b = el("button", "", text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

const DONE = {
  deactivate: (name, r) => `${name} deactivated: their token is refused; ${r.released} held item(s) back in the queue.`,
  reactivate: (name) => `${name} is active again; their token works.`,
  revoke: (name, r) =>
    `${name}'s token no longer works (${r.released} held item(s) back in the queue); rotate to give a new one.`,
  "rotate-token": (name) => `${name} has a new token; the old one no longer works.`,
};

async function act(name, action) {
  const project = state.project;
  let reply;
  try {
    reply = await json("POST", `${projectPath(project)}/annotators/${action}`, { name });
  } catch (err) {
    setStatus(String(err.message || err), "error");
    return;
  }
  if (action === "rotate-token") showToken(name, reply.token);
  setStatus(DONE[action](name, reply), "ok");
  await selectProject(project);
}

function showToken(name, token) {
  $("token-for").textContent = name;
  $("new-token").textContent = token;
  $("new-link").textContent = `${location.origin}${ROOT}/#token=${token}`;
  $("token-box").hidden = false;
}

// --- export ---------------------------------------------------------------------------------------------

async function download(event) {
  event.preventDefault();
  const project = state.project;
  const format = $("export-format").value;
  const exclude = $("exclude-flagged").checked;
  const query = new URLSearchParams({ format, exclude_flagged: String(exclude) });
  let response;
  try {
    response = await api("GET", `${projectPath(project)}/export?${query}`);
  } catch (err) {
    setStatus(String(err.message || err), "error");
    return;
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    setStatus((data && data.detail) || `export failed (${response.status})`, "error");
    return;
  }
  const text = await response.text();
  const records = text.split("\n").filter((line) => line).length;
  const link = el("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
  link.download = `${project.replace(/[^A-Za-z0-9._-]+/g, "_")}-${format}.jsonl`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  const flagged = Number(response.headers.get("X-Flagged-Annotators") || 0);
  const leftOut = response.headers.get("X-Flagged-Labels-Left-Out");
  let note = "";
  if (leftOut !== null) note = `; left out ${leftOut} labels of ${flagged} flagged annotator(s)`;
  else if (flagged) note = `; ${flagged} flagged annotator(s) included`;
  setStatus(`Downloaded ${records} ${format} records${note}.`, "ok");
}

// --- start ------------------------------------------------------------------------------------------------

function start() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("token").value.trim());
  });
  $("logout").addEventListener("click", () => logout(""));
  $("refresh").addEventListener("click", async () => renderOverview(await json("GET", "/api/admin/overview")));
  $("token-close").addEventListener("click", () => {
    $("token-box").hidden = true;
    $("new-token").textContent = "";
    $("new-link").textContent = "";
  });
  $("export-form").addEventListener("submit", download);
  signInAtStart(TOKEN_KEY, login, logout);
}

start();
