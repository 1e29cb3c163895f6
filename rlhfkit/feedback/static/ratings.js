// rlhfkit annotate: rating one response (thumbs up/down, or a Likert score on each named axis).
// Loaded before app.js and called by it (renderRating, ratingKey, ratingAnswer); uses app.js's el() and
// $() at run time. Axis names come from the server and, like model text, go in as text only.
"use strict";

const rating = {
  question: null, // null, {type: "thumbs"} or {type: "likert", axes: [...], scale}
  values: {}, // {thumbs: "up" | "down"} or {axis: score}
  axis: 0, // the focused Likert axis
};

function ratingItem() {
  return Boolean(rating.question);
}

// Build the rating controls for `question` (null: a comparison, controls hidden).
function renderRating(question) {
  rating.question = question || null;
  rating.values = {};
  rating.axis = 0;
  show("rating-choices", ratingItem());
  show("rating-keys", ratingItem());
  show("compare-keys", !ratingItem());
  const thumbs = ratingItem() && question.type === "thumbs";
  show("thumbs", thumbs);
  show("likert", ratingItem() && !thumbs);
  const likert = $("likert");
  likert.replaceChildren();
  if (ratingItem() && !thumbs) {
    likert.append(el("span", "label", `Score each axis from 1 (worst) to ${question.scale} (best):`));
    question.axes.forEach((axis, n) => {
      const group = el("div", "axis");
      group.setAttribute("role", "radiogroup");
      group.setAttribute("aria-label", `${axis}: 1 (worst) to ${question.scale} (best)`);
      group.tabIndex = 0;
      group.dataset.axis = axis;
      group.append(el("span", "axis-name", axis));
      for (let score = 1; score <= question.scale; score++) {
        const button = el("button", "score", String(score));
        button.type = "button";
        button.tabIndex = -1;
        button.dataset.score = String(score);
        button.setAttribute("role", "radio");
        button.setAttribute("aria-label", `${axis} ${score}`);
        button.addEventListener("click", () => setScore(n, score, false));
        group.append(button);
      }
      group.addEventListener("focusin", () => {
        rating.axis = n;
        refreshRating();
      });
      likert.append(group);
    });
  }
  refreshRating();
  if (ratingItem() && !thumbs) focusAxis(0);
}

function axes() {
  return rating.question && rating.question.type === "likert" ? rating.question.axes : [];
}

function focusAxis(n) {
  const groups = document.querySelectorAll("#likert .axis");
  if (!groups.length) return;
  rating.axis = Math.max(0, Math.min(groups.length - 1, n));
  groups[rating.axis].focus();
  refreshRating();
}

function setThumbs(value) {
  rating.values = { thumbs: value };
  refreshRating();
}

// Score axis `n`; with `advance`, move on to the next axis (the last one stays).
function setScore(n, score, advance) {
  const names = axes();
  if (n >= names.length || score < 1 || score > rating.question.scale) return;
  rating.values[names[n]] = score;
  if (advance && n + 1 < names.length) focusAxis(n + 1);
  else focusAxis(n);
}

function refreshRating() {
  for (const button of document.querySelectorAll("[data-thumbs]")) {
    const on = rating.values.thumbs === button.dataset.thumbs;
    button.classList.toggle("selected", on);
    button.setAttribute("aria-checked", String(on));
  }
  document.querySelectorAll("#likert .axis").forEach((group, n) => {
    group.classList.toggle("focused", n === rating.axis);
    const chosen = rating.values[group.dataset.axis];
    for (const button of group.querySelectorAll(".score")) {
      const on = Number(button.dataset.score) === chosen;
      button.classList.toggle("selected", on);
      button.setAttribute("aria-checked", String(on));
    }
  });
}

// Handle a key on a rating item; true when it was a rating key.
function ratingKey(key) {
  if (!ratingItem()) return false;
  if (rating.question.type === "thumbs") {
    if (key === "u" || key === "1") setThumbs("up");
    else if (key === "d" || key === "2") setThumbs("down");
    else return false;
    return true;
  }
  if (/^[0-9]$/.test(key)) {
    setScore(rating.axis, key === "0" ? 10 : Number(key), true); // 0 is 10, on a 1-10 scale
    return true;
  }
  const score = rating.values[axes()[rating.axis]];
  if (key === "ArrowDown") focusAxis(rating.axis + 1);
  else if (key === "ArrowUp") focusAxis(rating.axis - 1);
  else if (key === "ArrowRight") setScore(rating.axis, score ? score + 1 : 1, false);
  else if (key === "ArrowLeft") setScore(rating.axis, score ? score - 1 : 1, false);
  else return false;
  return true;
}

// {rating} to send, or {error} saying what is missing.
function ratingAnswer() {
  if (rating.question.type === "thumbs") {
    return rating.values.thumbs ? { rating: { ...rating.values } } : { error: "Choose thumbs up (u) or down (d) first." };
  }
  const missing = axes().filter((axis) => !rating.values[axis]);
  if (missing.length) {
    focusAxis(axes().indexOf(missing[0]));
    return { error: `Score every axis first (1-${rating.question.scale}): ${missing.join(", ")}.` };
  }
  return { rating: { ...rating.values } };
}

function setupRating() {
  for (const button of document.querySelectorAll("[data-thumbs]")) {
    button.addEventListener("click", () => setThumbs(button.dataset.thumbs));
  }
}
