"""The report's figures, drawn with matplotlib's object API (no pyplot state) into PNGs.

Each function draws one figure from an :class:`~lpdm.report.analysis.Analysis` and returns
False when there is nothing to draw (e.g. no finished run).
"""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator
from PIL import Image

from lpdm.learners.spec import find_spec, learner_names
from lpdm.report.analysis import Analysis, Group, Setting, normalised_finals, scale_label
from lpdm.report.profiles import (
    EXTRA_FIELDS,
    LAYER_FIELDS,
    diagnostic_columns,
    end_of_training_profiles,
    nan_iqm,
)
from lpdm.report.stats import iqm_band, performance_profile
from lpdm.scores import MOVING_AVERAGE_WINDOW, trailing_means
from lpdm.sweeps.grid import short_variant

CURVE_POINTS = 100
PROFILE_POINTS = 101
DPI = 100
PANEL = (4.6, 3.2)  # inches per subplot
_OTHER = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def color(learner: str) -> str:
    """The learner's colour: its spec's, else one of a few others, by its name."""
    spec = find_spec(learner)
    if spec and spec.color:
        return spec.color
    return _OTHER[zlib.crc32(learner.encode()) % len(_OTHER)]


def _grid(rows: int, cols: int, widen: float = 1.0) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` x ``cols`` panels, each ``widen`` times the usual width."""
    figure = Figure(figsize=(PANEL[0] * widen * cols, PANEL[1] * rows), dpi=DPI,
                    layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, cols, squeeze=False))
    return figure, axes


def _legend(figure: Figure, learners: list[str]) -> None:
    handles = [figure.axes[0].plot([], [], color=color(lr), lw=3)[0] for lr in learners]
    figure.legend(handles, learners, loc="outside upper center", ncols=len(learners),
                  frameon=False)


def _rows(analysis: Analysis) -> list[tuple[str, str]]:
    """(env, variant) pairs: one row of panels each."""
    return list(dict.fromkeys((s.env, s.variant) for s in analysis.settings))


def _title(env: str, algo: str, variant: str, what: str = "") -> str:
    parts = [env, algo, *([short_variant(variant)] if variant else []),
             *([what] if what else [])]
    return " · ".join(parts)


def save_png(figure: Figure, path: Path) -> bool:
    """Write ``figure`` as a PNG of at most 256 colours. Line and bar plots lose nothing
    visible, and the files shrink about 2.7x, which matters because the HTML page embeds
    them all (a suite's diagnostics figure: 1.6 MB in full colour, 0.6 MB)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    image = Image.open(buffer).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                   dither=Image.Dither.NONE).save(path, optimize=True)
    return True


# --------------------------------------------------------------------------- overview


def _columns(analysis: Analysis, env: str) -> tuple[list[tuple[str, str]], list[str], str]:
    """The overview's bars of ``env``: its (algo, variant) pairs, their tick labels and the
    x-axis label (the swept option's name when one option is swept)."""
    pairs = list(dict.fromkeys((s.algo, s.variant) for s in analysis.settings if s.env == env))
    variants = [short_variant(v) for _, v in pairs]
    names = {v.rpartition("=")[0] for v in variants}
    if not any(variants):
        return pairs, [a for a, _ in pairs], ""
    if len(names) == 1 and "," not in next(iter(names)) and all("=" in v for v in variants):
        name = next(iter(names))
        values = [v[len(name) + 1:] for v in variants]
        return pairs, [f"{a}\n{v}" for (a, _), v in zip(pairs, values, strict=True)], name
    return pairs, [f"{a}\n{v}" for (a, _), v in zip(pairs, variants, strict=True)], ""


TICK_SPACE = 3.8  # inches of a panel's x axis
TICK_CHAR = 0.065  # inches per character of a 7-point tick label, with room between ticks


def _tick_inches(ticks: list[str]) -> float:
    """The width ``ticks`` need side by side: each as wide as the longest label line."""
    widest = max((len(line) for tick in ticks for line in tick.split("\n")), default=0)
    return len(ticks) * max(widest, 10) * TICK_CHAR


def overview(analysis: Analysis, path: Path) -> bool:
    """One panel per environment: the final score of every learner under every algorithm
    and every swept option value (bars: IQM with its 95% interval; dots: runs)."""
    envs, learners = analysis.envs, analysis.learners
    # Panels with many or long-labelled bar groups (an ablation's variants) get wider, and
    # fewer per row, so that their tick labels do not run into each other.
    widen = max(1.0, max(_tick_inches(_columns(analysis, env)[1]) for env in envs)
                / TICK_SPACE)
    cols = min(max(1, round(4 / widen)), len(envs))
    rows = -(-len(envs) // cols)
    figure, axes = _grid(rows, cols, widen)
    width = 0.8 / max(len(learners), 1)
    drawn = False
    for index, ax in enumerate(axes.flat):
        if index >= len(envs):
            ax.set_visible(False)
            continue
        env = envs[index]
        pairs, ticks, xlabel = _columns(analysis, env)
        ax.set_title(env, fontsize=10)
        ax.set_xticks(range(len(pairs)), ticks, fontsize=8 if len(pairs) <= 3 else 7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("final score (IQM, 95% CI)")
        for a, (algo, variant) in enumerate(pairs):
            for k, learner in enumerate(learners):
                group = analysis.group(Setting(env, algo, variant), learner)
                if group is None or not group.values("final_score").size:
                    continue
                x = a - 0.4 + width * (k + 0.5)
                iqm = group.scores["final_score"].iqm
                error = None
                if iqm.has_interval:
                    error = [[iqm.value - iqm.low], [iqm.high - iqm.value]]
                ax.bar(x, iqm.value, width * 0.9, color=color(learner), alpha=0.75,
                       yerr=error, capsize=2, ecolor="black")
                values = group.values("final_score")
                jitter = np.random.default_rng(k).uniform(-width / 4, width / 4, values.size)
                ax.scatter(x + jitter, values, s=6, color="black", zorder=3)
                drawn = True
    if drawn:
        _legend(figure, learners)
    return drawn and save_png(figure, path)


# --------------------------------------------------------------------------- diagnostics


DIAGNOSTIC_PANELS = LAYER_FIELDS[:3]  # the over-training figure leaves out gradients


def diagnostic_panels(analysis: Analysis) -> tuple[tuple[str, str], ...]:
    """The diagnostics figure's panels, ``(field, label)``: ``DIAGNOSTIC_PANELS``, then each
    learner-own diagnostic (``EXTRA_FIELDS``, e.g. ``dfa``'s alignment with backpropagation)
    that a finished run logged a value of."""
    def logged(field: str) -> bool:
        tables = (run.metrics() for group in analysis.groups for run in group.finished)
        return any(np.isfinite(table[name]).any()
                   for table in tables for name in diagnostic_columns(table, field))
    return DIAGNOSTIC_PANELS + tuple(extra for extra in EXTRA_FIELDS if logged(extra[0]))


def diagnostics(analysis: Analysis, path: Path) -> bool:
    """Per setting (a row): the policy network's per-layer diagnostics over training, IQM
    across seeds of each learner (layer 1 dashed, the last layer solid)."""
    settings, learners = analysis.settings, analysis.learners
    panels = diagnostic_panels(analysis)
    figure, axes = _grid(len(settings), len(panels))
    drawn = False
    for setting, row in zip(settings, axes, strict=True):
        for (field, label), ax in zip(panels, row, strict=True):
            ax.set_title(_title(setting.env, setting.algo, setting.variant, label), fontsize=9)
            ax.set_xlabel("environment steps")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            for learner in learners:
                group = analysis.group(setting, learner)
                if group is None or not group.finished:
                    continue
                tables = [run.metrics() for run in group.finished]
                columns = diagnostic_columns(tables[0], field)
                end = max(run.total_steps for run in group.finished)
                grid = np.linspace(0, end, CURVE_POINTS)
                for layer, name in enumerate(columns):
                    curves = [returns_on_grid(t["global_step"], t[name], grid, window=1)
                              for t in tables if name in t and t[name].size]
                    if not curves:
                        continue
                    with warnings.catch_warnings():  # all-NaN points (no episode yet)
                        warnings.simplefilter("ignore", RuntimeWarning)
                        middle = nan_iqm(np.stack(curves))
                    style = "-" if layer == len(columns) - 1 else ("--" if layer == 0 else ":")
                    ax.plot(grid, middle, color=color(learner), ls=style, lw=1.4)
                    drawn = True
    if drawn:
        _legend(figure, learners)
    return drawn and save_png(figure, path)


MIN_PROFILE_LAYERS = 3  # two layers are read well enough in the diagnostics figure


def layer_profiles(analysis: Analysis, path: Path) -> bool:
    """Per setting (a row): each layer's diagnostics at the end of training against its
    depth (1: next to the input), IQM across seeds. Drawn when a policy network has at
    least ``MIN_PROFILE_LAYERS`` layers: what a depth study reads."""
    settings, learners = analysis.settings, analysis.learners
    profiles = end_of_training_profiles(analysis)
    if not profiles or max(p.shape[0] for p in profiles.values()) < MIN_PROFILE_LAYERS:
        return False
    rows = [s for s in settings if any((s, lr) in profiles for lr in learners)]
    figure, axes = _grid(len(rows), len(LAYER_FIELDS))
    for setting, row in zip(rows, axes, strict=True):
        for p, ((field, label), ax) in enumerate(zip(LAYER_FIELDS, row, strict=True)):
            ax.set_title(f"{_title(setting.env, setting.algo, setting.variant)}\n{label}",
                         fontsize=9)
            ax.set_xlabel("layer (1: next to the input)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if field == "grad_norm":
                ax.set_yscale("log")
            for learner in learners:
                profile = profiles.get((setting, learner))
                if profile is None or not np.isfinite(profile[:, p]).any():
                    continue
                depth = np.arange(1, profile.shape[0] + 1)
                ax.plot(depth, profile[:, p], color=color(learner), marker="o", ms=3, lw=1.4)
    _legend(figure, learners)
    return save_png(figure, path)


# --------------------------------------------------------------------------- learning curves


def returns_on_grid(steps: np.ndarray, returns: np.ndarray, grid: np.ndarray,
                    window: int = MOVING_AVERAGE_WINDOW) -> np.ndarray:
    """Training return averaged over the last ``window`` episodes, at each step of ``grid``.

    ``steps [E]`` are the global steps at which episodes ended. NaN before the first one.
    """
    smoothed = trailing_means(returns, window)
    index = np.searchsorted(steps, grid, side="right") - 1
    return np.where(index >= 0, smoothed[np.clip(index, 0, None)], np.nan)


def _curves(group: Group) -> tuple[np.ndarray, np.ndarray] | None:
    data = [run.training_returns() for run in group.finished]
    data = [(s, r) for s, r in data if s.size]
    if not data:
        return None
    start = max(s[0] for s, _ in data)
    end = max(run.total_steps for run in group.finished)
    grid = np.linspace(start, max(end, start), CURVE_POINTS)
    return grid, np.stack([returns_on_grid(s, r, grid) for s, r in data])


def learning_curves(analysis: Analysis, path: Path) -> bool:
    """IQM across seeds of the smoothed training return, with 95% CI bands."""
    rows, algos = _rows(analysis), analysis.algos
    figure, axes = _grid(len(rows), len(algos))
    drawn = False
    for (env, variant), row in zip(rows, axes, strict=True):
        for algo, ax in zip(algos, row, strict=True):
            ax.set_title(_title(env, algo, variant), fontsize=9)
            ax.set_xlabel("environment steps")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20000 -> 20k
            ax.set_ylabel(f"return ({MOVING_AVERAGE_WINDOW}-episode mean)")
            for learner in analysis.learners:
                group = analysis.group(Setting(env, algo, variant), learner)
                curves = _curves(group) if group else None
                if curves is None:
                    continue
                grid, values = curves
                middle, low, high = iqm_band(values)
                ax.plot(grid, middle, color=color(learner), lw=1.6)
                ax.fill_between(grid, low, high, color=color(learner), alpha=0.2, lw=0)
                drawn = True
    if drawn:
        _legend(figure, analysis.learners)
    return drawn and save_png(figure, path)


# --------------------------------------------------------------------------- distributions


def _strip(ax: Axes, position: float, values: np.ndarray, colour: str) -> None:
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, values.size)
    ax.scatter(position + jitter, values, s=14, color=colour, edgecolor="black", lw=0.4,
               zorder=3)


def score_distributions(analysis: Analysis, path: Path) -> bool:
    """Per setting (a row): violin and points of the final and max scores of each learner."""
    settings, learners = analysis.settings, analysis.learners
    figure, axes = _grid(len(settings), 2)
    drawn = False
    for setting, row in zip(settings, axes, strict=True):
        for ax, score in zip(row, ("final_score", "max_score"), strict=True):
            ax.set_title(_title(setting.env, setting.algo, setting.variant,
                                score.replace("_", " ")), fontsize=9)
            ax.set_xticks(range(len(learners)), learners, fontsize=8)
            for position, learner in enumerate(learners):
                group = analysis.group(setting, learner)
                values = group.values(score) if group else np.array([])
                if values.size >= 2 and np.ptp(values) > 0:
                    parts = ax.violinplot(values, [position], widths=0.8, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor(color(learner))
                        body.set_alpha(0.3)
                if values.size:
                    _strip(ax, position, values, color(learner))
                    drawn = True
            threshold = analysis.thresholds.get((setting.env, setting.algo), np.nan)
            if score == "final_score" and np.isfinite(threshold):
                ax.axhline(threshold, color="#d62728", ls="--", lw=1, label="stuck threshold")
                ax.legend(fontsize=7, loc="lower right", frameon=False)
    return drawn and save_png(figure, path)


# --------------------------------------------------------------------------- profiles


def performance_profiles(analysis: Analysis, path: Path) -> bool:
    """Fraction of runs whose normalised final score exceeds τ, averaged over environments
    (τ from 0 to 1, widened to every score when fixed references leave that range)."""
    panels = list(dict.fromkeys((s.algo, s.variant) for s in analysis.settings))
    figure, axes = _grid(1, len(panels))
    drawn = False
    for (algo, variant), ax in zip(panels, axes[0], strict=True):
        ax.set_title(_title(f"{len(analysis.envs)} environment(s)", algo, variant), fontsize=9)
        ax.set_xlabel(f"normalised final score τ ({scale_label(analysis.normalisation[algo])})")
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_ylim(-0.02, 1.02)
        by_learner = {}
        for learner in analysis.learners:
            groups = [g for g in analysis.groups if (g.setting.algo, g.setting.variant,
                                                     g.learner) == (algo, variant, learner)]
            tasks = [normalised_finals(g, analysis.normalisation) for g in groups]
            if tasks := [t for t in tasks if t.size]:
                by_learner[learner] = tasks
        scores = np.concatenate([np.concatenate(t) for t in by_learner.values()] or [[0.0]])
        taus = np.linspace(min(0.0, scores.min()), max(1.0, scores.max()), PROFILE_POINTS)
        for learner, tasks in by_learner.items():
            value, low, high = performance_profile(tasks, taus)
            ax.step(taus, value, where="post", color=color(learner), lw=1.6)
            ax.fill_between(taus, low, high, step="post", color=color(learner), alpha=0.2, lw=0)
            drawn = True
    if drawn:
        _legend(figure, analysis.learners)
    return drawn and save_png(figure, path)


# --------------------------------------------------------------------------- wall time


def wall_time(analysis: Analysis, path: Path) -> bool:
    """Milliseconds per iteration (whole, and the update alone) and per 1000 steps."""
    envs, algos = analysis.envs, analysis.algos
    learners = [lr for lr in learner_names() if lr in analysis.learners] + \
        [lr for lr in analysis.learners if lr not in learner_names()]
    figure, axes = _grid(2, len(algos))
    width = 0.8 / max(len(learners), 1)
    drawn = False
    for column, algo in enumerate(algos):
        top, bottom = axes[0][column], axes[1][column]
        for k, learner in enumerate(learners):
            per_iteration, update, per_steps = [], [], []
            for env in envs:
                groups = [g for g in analysis.groups if g.setting.env == env
                          and g.setting.algo == algo and g.learner == learner]
                runs = [r for g in groups for r in g.finished]
                per_iteration.append(1000 * _mean([r.seconds_per_iteration for r in runs]))
                update.append(1000 * _mean([r.update_seconds_per_iteration for r in runs]))
                per_steps.append(1000 * _mean([r.seconds_per_1k_steps for r in runs]))
            x = np.arange(len(envs)) - 0.4 + width * (k + 0.5)
            top.bar(x, per_iteration, width, color=color(learner), alpha=0.45)
            top.bar(x, update, width, color=color(learner), hatch="//", edgecolor="white")
            bottom.bar(x, per_steps, width, color=color(learner))
            drawn |= bool(np.isfinite(per_iteration).any())
        top.set_title(f"{algo}: ms per iteration (hatched: the update)", fontsize=9)
        bottom.set_title(f"{algo}: ms per 1000 environment steps", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks(range(len(envs)), envs, fontsize=8, rotation=15)
            ax.set_ylabel("milliseconds")
    if drawn:
        _legend(figure, learners)
    return drawn and save_png(figure, path)


def _mean(values: list[float]) -> float:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else np.nan
