"""Figures for ``rlhfkit report``: drawn with matplotlib's Agg renderer on ``Figure`` objects (no pyplot, so
no global state and no display) and returned as ``data:image/png;base64,...`` URIs to embed in the page.

- `metrics_figure`: a stage's numeric metrics against step, one small panel per family of keys
  (losses together, KL estimates together, ...; `metric_panels`); timing keys are left to a table.
- `frontier_figure`: mean reward-model score against KL to the reference, one colour per method: eval
  points (large markers) and RL training steps (per-step score vs KL, small dots).
- `loop_figure`: proxy and gold score against KL across the rounds of a loop run (the over-optimisation
  plot of Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization", Fig. 1) and the win rate
  with its 95% interval against the labels collected.
"""

from __future__ import annotations

import base64
import io
import math

from matplotlib import colormaps
from matplotlib.figure import Figure

from rlhfkit.eval.report_data import is_number

DPI = 80
COLUMNS = 4
# A key joins the first family one of whose substrings it contains; other keys get a panel each.
FAMILIES = (
    ("loss", ("loss",)),
    ("KL", ("kl",)),
    ("accuracy", ("accuracy",)),
    ("score / reward", ("score", "reward", "margin")),
    ("log-probs", ("logps",)),
    ("length", ("length", "tokens")),
    ("clipping", ("clip", "ratio")),
)


def is_timing(key: str) -> bool:
    """Wall-clock keys (``time_s``, ``time_rollout`` ...): reported in a table, not plotted."""
    return key == "time_s" or key.startswith("time_")


def metric_panels(rows: list[dict]) -> list[tuple[str, list[str]]]:
    """``[(title, keys)]``: the numeric keys of ``rows`` (not step, not timing) grouped by `FAMILIES`."""
    keys = [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k != "step" and not is_timing(k)
        if any(is_number(r.get(k)) for r in rows)
    ]
    grouped: dict[str, list[str]] = {}
    for key in keys:
        family = next((title for title, parts in FAMILIES if any(p in key for p in parts)), key)
        grouped.setdefault(family, []).append(key)
    order = [title for title, _ in FAMILIES if title in grouped]
    return [(title, grouped[title]) for title in order + [t for t in grouped if t not in order]]


def metrics_figure(rows: list[dict]) -> str | None:
    """Small multiples of a stage's metrics against step; None when nothing numeric was logged."""
    panels = metric_panels(rows)
    if not panels:
        return None
    steps = [r["step"] if is_number(r.get("step")) else i + 1 for i, r in enumerate(rows)]
    ncols = min(COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.1 * ncols, 2.2 * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    marker = "." if len(rows) <= 40 else None
    for ax, (title, keys) in zip(axes, panels, strict=False):
        for key in keys:
            ax.plot(
                steps, [r[key] if is_number(r.get(key)) else math.nan for r in rows], marker=marker, label=key
            )
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if len(keys) > 1:
            ax.legend(fontsize=6)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.supxlabel("step", fontsize=8)
    return data_uri(fig)


def frontier_figure(
    points: dict[str, list[tuple[float, float, str]]], curves: dict[str, tuple[str, list[float], list[float]]]
) -> str | None:
    """Score against KL: ``points`` maps a method to ``(kl, score, source)`` eval points (sources are
    written next to the points when a method has several); ``curves`` maps a training stage to
    ``(method, kls, scores)``. None when there is nothing to draw."""
    if not points and not curves:
        return None
    names = list(dict.fromkeys([*points, *(method for method, _, _ in curves.values())]))
    colour = {name: colormaps["tab10"](i % 10) for i, name in enumerate(names)}
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for stage, (method, kls, scores) in curves.items():
        ax.plot(kls, scores, ".", ms=6, alpha=0.5, color=colour[method], label=f"{stage} (training steps)")
    for method, found in points.items():
        kls, scores, sources = zip(*found, strict=True)
        ax.plot(kls, scores, "o", ms=8, color=colour[method], label=f"{method} (eval)")
        if len(found) > 1:
            for kl, score, source in found:
                ax.annotate(source, (kl, score), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("KL to the reference (nats per response)")
    ax.set_ylabel("mean reward-model score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return data_uri(fig)


def loop_figure(loop: list[dict]) -> str | None:
    """Proxy and gold score vs KL and win rate vs labels, one point per round; None without rounds."""
    rounds = sorted(loop, key=lambda r: r["round"])
    if not rounds:
        return None
    fig = Figure(figsize=(11.0, 3.4), layout="constrained")
    proxy_ax, gold_ax, win_ax = fig.subplots(1, 3)
    for ax, key, title in (
        (proxy_ax, "proxy_score", "proxy (reward-model) score"),
        (gold_ax, "gold_score", "gold score"),
    ):
        found = [
            (r["kl"], r[key], r["round"]) for r in rounds if is_number(r.get("kl")) and is_number(r.get(key))
        ]
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("KL to the reference (nats)", fontsize=8)
        if not found:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
            continue
        kls, scores, numbers = zip(*found, strict=True)
        ax.plot(kls, scores, "o-")
        for kl, score, number in found:
            ax.annotate(f"r{number}", (kl, score), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.grid(alpha=0.3)
    wins = [
        r
        for r in rounds
        if all(is_number(r.get(k)) for k in ("labels_total", "win_rate", "win_rate_low", "win_rate_high"))
    ]
    win_ax.set_title("win rate vs baseline (95% interval)", fontsize=9)
    win_ax.set_xlabel("labels collected", fontsize=8)
    if wins:
        win_ax.errorbar(
            [r["labels_total"] for r in wins],
            [r["win_rate"] for r in wins],
            yerr=[
                [r["win_rate"] - r["win_rate_low"] for r in wins],
                [r["win_rate_high"] - r["win_rate"] for r in wins],
            ],
            fmt="o-",
            capsize=3,
        )
        win_ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        win_ax.grid(alpha=0.3)
    return data_uri(fig)


def data_uri(fig: Figure) -> str:
    """The figure as a PNG ``data:`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
