// rlhfkit annotate: what the labelling page (app.js) and the admin page (admin.js) share. Plain JS.
//
// Everything from the server goes into the page as text (`el`, textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

// the path prefix the app is served under behind a reverse proxy (`serve --root-path`), "" at the top
const ROOT = document.querySelector('meta[name="rlhfkit-root"]').content;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "";
}

// A request to the app with the bearer token (a JSON body if one is given); the raw Response.
function authorisedFetch(token, method, path, body) {
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(ROOT + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// Sign in at start-up: with the token of a link like http://host:8000/#token=... (the fragment never
// reaches the server, and is taken out of the address bar), else with the one this tab stored under
// `tokenKey`; with neither, show the sign-in form.
function signInAtStart(tokenKey, login, logout) {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) history.replaceState(null, "", location.pathname);
  const token = fromLink || sessionStorage.getItem(tokenKey);
  if (token) login(token);
  else logout("");
}
