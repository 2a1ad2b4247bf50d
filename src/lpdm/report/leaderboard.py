"""The leaderboard's numbers: per algorithm (a :class:`Board`), every learner's standing over
the environments of the committed studies the board names, at the library defaults, and
under PPO after equal tuning (each learner at the options ``lpdm tune`` chose for it with
the same budget as every other).

A standing holds the IQM of the normalised final scores (fixed references, ``lpdm.suites``,
where every environment has one), its ratio to ``bp``'s, the mean P(> ``bp``) and
P(> ``frozen``), the environments where it is above ``frozen`` (and significantly so after
Holm), each environment's normalised IQM, its time per iteration relative to ``bp``, and
its last hidden layer's diagnostics at the end of training (where the runs kept them).
A tuned board also holds each learner's :class:`TuningEffect`: itself after tuning against
itself at the defaults.
:mod:`lpdm.report.leaderboard_page` writes them, with the verdict of
:mod:`lpdm.report.leaderboard_verdict`, as ``docs/results/leaderboard/README.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpdm.errors import RunError
from lpdm.learners.spec import find_spec, learner_specs
from lpdm.report.analysis import (
    BASELINE,
    CONTROL,
    MIN_MAX,
    Group,
    Normalisation,
    make_groups,
    normalisations,
    normalised_finals,
)
from lpdm.report.judge import algorithm_name, load_runs
from lpdm.report.profiles import at_end, diagnostic_columns
from lpdm.report.published import Comparison, compare
from lpdm.report.records import RunRecord
from lpdm.report.stats import (
    SIGNIFICANCE,
    Estimate,
    average_probability_of_improvement,
    holm,
    iqm,
    mann_whitney_p,
    probability_of_improvement,
    smallest_mann_whitney_p,
    stratified_iqm,
    stratified_iqm_ratio,
)
from lpdm.suites import on_minatar

FINAL = "final_score"


@dataclass(frozen=True)
class LayerReading:
    """A diagnostic a standing reads at the end of training: ``field`` of the policy
    network's hidden layer ``layer`` (-1: the last, 0: the first, read only where the
    network has more than one), under the page's ``label``."""

    key: str
    field: str
    layer: int
    label: str

    def column(self, table: dict[str, np.ndarray]) -> str | None:
        """The column of a run's metrics this reads (None where the run has none)."""
        columns = diagnostic_columns(table, self.field)
        if not columns or (self.layer == 0 and len(columns) == 1):
            return None
        return columns[self.layer]


# the layer diagnostics a standing reads; the first hidden layer's alignment shows how far
# dfa's feedback reaches back from the output (its last layer aligns far better)
LAYER_READINGS = (
    LayerReading("distance_corr", "distance_corr", -1, "corr(target, output distances)"),
    LayerReading("saturation", "saturation", -1, "saturated units"),
    LayerReading("bp_alignment", "bp_alignment", -1, "cosine with backpropagation's update"),
    LayerReading("first_bp_alignment", "bp_alignment", 0,
                 "first hidden layer: cosine with backpropagation's update"),
)
BACKPROP, BP_FREE, CONTROL_KIND, UNREGISTERED = ("backpropagation", "BP-free", "control",
                                                 "unregistered")


@dataclass(frozen=True)
class Board:
    """One algorithm's leaderboard and the committed data it reads (paths under the
    repository root: archives, folders of archives, or a report's ``runs.csv``):
    ``sources`` must exist, ``later`` are read once committed (a leaderboard study)."""

    algo: str
    sources: tuple[str, ...]
    later: tuple[str, ...] = ()
    # a timing sweep's report (read once committed): every learner in one sweep, in turns on
    # one machine, so the costs compare; without it they come from ``sources`` where a
    # learner ran in the same sweep as ``bp``
    timing: str | None = None
    tuned: bool = False  # each learner at its tuned options, not at the defaults
    # MinAtar's games alone, on a board of their own (they have no reference scores, so
    # they are normalised from the random return to the best run, which must not reach the
    # other environments'); a board
    # without it reads every other environment of its sources
    minatar: bool = False
    settings: str = ""  # how its runs were set, where not at the library defaults
    # a tuned board: the sources of the same learners at the library defaults (those
    # committed), against which it reads what tuning changed
    defaults: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The board's name in files and lookups: its algorithm, ``-minatar`` for MinAtar's
        games, ``-tuned`` when tuned."""
        return board_key(self.algo, self.tuned, self.minatar)


def board_key(algo: str, tuned: bool, minatar: bool = False) -> str:
    """A board's key (:attr:`Board.key`)."""
    return algo + ("-minatar" if minatar else "") + ("-tuned" if tuned else "")


def board_title(algo: str, tuned: bool, minatar: bool = False) -> str:
    """How the page names a board: "PPO", "DQN on MinAtar", "PPO after equal tuning"."""
    return (algorithm_name(algo) + (" on MinAtar" if minatar else "")
            + (" after equal tuning" if tuned else ""))


LEADERBOARD_STUDY = "docs/results/leaderboard"
TIMING_STUDY = f"{LEADERBOARD_STUDY}/timing"
BOARDS: tuple[Board, ...] = (
    Board("ppo", ("docs/results/suite/parts",), (f"{LEADERBOARD_STUDY}/ppo",),
          f"{TIMING_STUDY}/ppo"),
    Board("dqn", ("docs/results/dqn/runs.csv",), (f"{LEADERBOARD_STUDY}/dqn",),
          f"{TIMING_STUDY}/dqn"),
    Board("reinforce", ("docs/results/suite/parts",)),
    Board("dqn", (), (f"{LEADERBOARD_STUDY}/minatar-dqn",), minatar=True,
          settings=f"MinAtar's DQN settings and conv trunk, `{LEADERBOARD_STUDY}/minatar-dqn.sh`"),
    # issue 25's tuned confirmations, then issue 26's new learners' (docs/results/leaderboard/
    # tune.sh); each learner confirmed in its own sweep, so no cost compares here
    Board("ppo", ("docs/results/tuned/suite/parts",),
          (f"{LEADERBOARD_STUDY}/tuned/suite/parts",),
          tuned=True, defaults=("docs/results/suite/parts", f"{LEADERBOARD_STUDY}/ppo")),
)


@dataclass(frozen=True)
class Cost:
    """A time per iteration over ``bp``'s: per environment the median over runs of each,
    divided; here the median of those ratios over ``settings`` environments and their
    range (NaN where no environment has both timed in the same sweep)."""

    median: float
    low: float
    high: float
    settings: int


@dataclass(frozen=True)
class Standing:
    """One learner under one board's algorithm, across its environments (normalised
    final scores)."""

    learner: str
    kind: str  # BACKPROP, BP_FREE, CONTROL_KIND or UNREGISTERED
    runs: int
    normalised_iqm: Estimate
    ratio_to_bp: Estimate  # IQM / bp's IQM, pooled over environments
    versus_bp: Estimate  # mean over environments of P(learner > bp)
    versus_frozen: Estimate  # mean over environments of P(learner > frozen)
    per_env: dict[str, float]  # environment -> IQM of its normalised final scores
    # against frozen, per environment both ran: higher (P > 0.5 and a higher IQM), and
    # higher / lower at Holm-adjusted p < SIGNIFICANCE over those environments
    compared_with_frozen: tuple[str, ...]
    higher_than_frozen: tuple[str, ...]
    beats_frozen: tuple[str, ...]
    loses_to_frozen: tuple[str, ...]
    time_vs_bp: Cost
    update_time_vs_bp: Cost
    # LayerReading key -> its value at the end of training, IQM over seeds, median over
    # environments (absent where no run kept it)
    layer_readings: dict[str, float]

    @property
    def environments(self) -> int:
        return len(self.per_env)

    @property
    def above_frozen_everywhere(self) -> bool:
        """Higher than ``frozen`` on every environment of its own, all compared."""
        return (len(self.compared_with_frozen) == self.environments > 0
                and self.higher_than_frozen == self.compared_with_frozen)


@dataclass(frozen=True)
class TuningEffect:
    """A learner after equal tuning against itself at the library defaults, on the
    ``envs`` where it has both (normalised final scores, the tuned board's scale)."""

    learner: str
    envs: tuple[str, ...]
    at_defaults: Estimate  # IQM, pooled over ``envs``
    tuned: Estimate
    ratio: Estimate  # tuned IQM / IQM at the defaults
    versus_defaults: Estimate  # mean over ``envs`` of P(tuned > at the defaults)
    # per environment: IQM at the defaults, and where tuning scores significantly higher
    # (lower) at a Holm-adjusted Mann-Whitney p below SIGNIFICANCE, Holm over ``envs``
    per_env_defaults: dict[str, float]
    higher: tuple[str, ...]
    lower: tuple[str, ...]


@dataclass(frozen=True)
class Leaderboard:
    """One board computed: its standings (best normalised IQM first), environments,
    normalisation, the sources read, and the registered learners without runs."""

    algo: str
    sources: tuple[str, ...]
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    normalisation: Normalisation
    standings: tuple[Standing, ...]
    without_runs: tuple[str, ...]
    unfinished: int  # runs left out because they did not finish
    holm_floor: float  # the smallest Holm-adjusted p a per-environment test can reach
    published: tuple[Comparison, ...] = ()  # other methods' published results beside ours
    timing: str | None = None  # the timing sweep the costs come from (None: the sources)
    tuned: bool = False  # each learner at its tuned options
    minatar: bool = False  # MinAtar's games alone
    settings: str = ""  # as Board.settings
    awaited: tuple[str, ...] = ()  # a board without committed runs yet: where they will be
    tuning_effects: tuple[TuningEffect, ...] = ()  # a tuned board against the defaults

    @property
    def key(self) -> str:
        """As :attr:`Board.key`."""
        return board_key(self.algo, self.tuned, self.minatar)

    @property
    def title(self) -> str:
        """As :func:`board_title`."""
        return board_title(self.algo, self.tuned, self.minatar)

    def standing(self, learner: str) -> Standing | None:
        return next((s for s in self.standings if s.learner == learner), None)

    def studied_everywhere(self, standing: Standing) -> bool:
        """Whether ``standing``'s learner ran on every environment of the board."""
        return standing.environments == len(self.envs)

    @property
    def update_times_kept(self) -> bool:
        return any(s.update_time_vs_bp.settings for s in self.standings)


def kind(learner: str) -> str:
    """How the leaderboard classes ``learner``, from its spec's flags."""
    spec = find_spec(learner)
    if spec is None:
        return UNREGISTERED
    if spec.local:
        return BP_FREE
    return CONTROL_KIND if spec.control else BACKPROP


def present_sources(root: Path, board: Board) -> tuple[str, ...]:
    """``board``'s sources, and those of its later ones committed under ``root`` (none: a
    board of later sources alone that are not committed yet)."""
    missing = [s for s in board.sources if not (root / s).exists()]
    if missing:
        raise RunError(f"leaderboard {board.key}: {', '.join(missing)} not found under {root}")
    return board.sources + tuple(s for s in board.later if (root / s).exists())


def board_runs(root: Path, sources: tuple[str, ...], board: Board) -> list[RunRecord]:
    """The runs of ``board``'s algorithm at the defaults (no swept option) in ``sources``
    under ``root``, on MinAtar's games or on the others as ``board.minatar`` says; a run
    (environment, learner, seed) found twice is an error."""
    runs = [r for r in load_runs(root, sources) if r.algo == board.algo and not r.variant
            and on_minatar(r.env) == board.minatar]
    twice = [key for key, n in Counter((r.env, r.learner, r.seed) for r in runs).items()
             if n > 1]
    if twice:
        env, learner, seed = twice[0]
        raise RunError(f"leaderboard {board.key}: {env} {learner} seed {seed} is in more than "
                       f"one of {', '.join(sources)}")
    if not runs:
        games = "MinAtar" if board.minatar else "non-MinAtar"
        raise RunError(f"leaderboard {board.key}: no {board.algo} runs on {games} environments "
                       f"at the defaults in {', '.join(sources)}")
    return runs


def compute(root: Path, board: Board) -> Leaderboard:
    """``board`` computed from its committed runs under ``root``; a board whose sources are
    all still to come is empty, :attr:`Leaderboard.awaited` naming them."""
    sources = present_sources(root, board)
    if not sources:
        return Leaderboard(
            board.algo, sources=(), envs=(), seeds=(),
            normalisation=Normalisation(board.algo, MIN_MAX, {}), standings=(),
            without_runs=tuple(learner_specs()), unfinished=0, holm_floor=math.nan,
            published=compare(board.algo, [], board.minatar), tuned=board.tuned,
            minatar=board.minatar, settings=board.settings, awaited=board.later)
    runs = board_runs(root, sources, board)
    finished = [r for r in runs if r.finished]
    groups = make_groups(finished)
    normalisation = normalisations(groups)[board.algo]
    by_learner = _by_learner(groups)
    timing = board.timing if board.timing and (root / board.timing).exists() else None
    timed = by_learner if timing is None else _by_learner(make_groups(
        [r for r in load_runs(root, (timing,)) if r.algo == board.algo and r.finished]))
    standings = [_standing(learner, mine, by_learner, normalisation, timed)
                 for learner, mine in by_learner.items()]
    envs = tuple(dict.fromkeys(g.setting.env for g in groups))
    # a pooled IQM over fewer environments does not rank against one over all of them
    standings.sort(key=lambda s: (s.environments < len(envs), -s.normalised_iqm.value
                                  if math.isfinite(s.normalised_iqm.value) else math.inf))
    counts = [len(g.values(FINAL)) for g in groups]
    floor = (len(envs) * smallest_mann_whitney_p(min(counts), min(counts))
             if counts and min(counts) else math.nan)
    return Leaderboard(
        board.algo, sources, envs, tuple(sorted({r.seed for r in finished})), normalisation,
        tuple(standings),
        tuple(name for name in learner_specs() if name not in by_learner),
        len(runs) - len(finished), min(1.0, floor),
        compare(board.algo, groups, board.minatar), timing, board.tuned, board.minatar,
        board.settings, tuning_effects=_tuning_effects(root, board, by_learner, normalisation))


def _tuning_effects(root: Path, board: Board, tuned: dict[str, list[Group]],
                    normalisation: Normalisation) -> tuple[TuningEffect, ...]:
    """Each learner of a tuned board (``tuned``: its groups by learner) against its runs at
    the defaults in ``board.defaults``, on the environments it has both."""
    sources = tuple(s for s in board.defaults if (root / s).exists())
    if not sources:
        return ()
    defaults = _by_learner(make_groups(
        r for r in board_runs(root, sources, board) if r.finished))
    scales = {normalisation.algo: normalisation}
    effects = []
    for learner, mine in tuned.items():
        reference = {g.setting.env: g for g in defaults.get(learner, [])}
        shared = [g for g in mine if g.setting.env in reference]
        if not shared:
            continue
        before = [normalised_finals(reference[g.setting.env], scales) for g in shared]
        after = [normalised_finals(g, scales) for g in shared]
        _, _, higher, lower = _against(shared, reference)
        effects.append(TuningEffect(
            learner, tuple(g.setting.env for g in shared), stratified_iqm(before),
            stratified_iqm(after), stratified_iqm_ratio(after, before),
            _mean_poi(shared, reference),
            {g.setting.env: float(iqm(b)) if b.size else math.nan
             for g, b in zip(shared, before, strict=True)}, higher, lower))
    return tuple(effects)


def _by_learner(groups: list[Group]) -> dict[str, list[Group]]:
    by_learner: dict[str, list[Group]] = {}
    for group in groups:
        by_learner.setdefault(group.learner, []).append(group)
    return by_learner


def _standing(learner: str, mine: list[Group], by_learner: dict[str, list[Group]],
              normalisation: Normalisation, timed: dict[str, list[Group]]) -> Standing:
    """``learner``'s standing from its groups ``mine``; its costs from ``timed`` (the
    groups the times are read from, by learner)."""
    scales = {normalisation.algo: normalisation}
    tasks = [normalised_finals(g, scales) for g in mine]
    bp = {g.setting.env: g for g in by_learner.get(BASELINE, [])}
    frozen = {g.setting.env: g for g in by_learner.get(CONTROL, [])}
    timed_bp = {g.setting.env: g for g in timed.get(BASELINE, [])}
    # on the environments both ran: a learner studied on fewer environments than bp is
    # compared with bp there, not with bp's whole suite
    shared = [(task, normalised_finals(bp[g.setting.env], scales))
              for g, task in zip(mine, tasks, strict=True) if g.setting.env in bp]
    ratio = stratified_iqm_ratio([t for t, _ in shared], [b for _, b in shared])
    if learner == BASELINE:
        ratio = Estimate(1.0)
    compared, higher, beats, loses = _against(mine, frozen) if learner != CONTROL else ((),) * 4
    return Standing(
        learner, kind(learner), sum(len(g.finished) for g in mine), stratified_iqm(tasks),
        ratio, _mean_poi(mine, bp) if learner != BASELINE else Estimate(math.nan),
        _mean_poi(mine, frozen) if learner != CONTROL else Estimate(math.nan),
        {g.setting.env: float(iqm(t)) if t.size else math.nan
         for g, t in zip(mine, tasks, strict=True)},
        compared, higher, beats, loses,
        *(_cost(timed.get(learner, []), timed_bp, attribute)
          for attribute in ("seconds_per_iteration", "update_seconds_per_iteration")),
        _layer_readings(mine))


def reading_text(reading: LayerReading, value: float) -> str:
    """A reading's value as the page writes it (a share of units in percent)."""
    return f"{value:.0%}" if reading.field == "saturation" else f"{value:.2f}"


def _layer_readings(mine: list[Group]) -> dict[str, float]:
    """Each of ``LAYER_READINGS`` at the end of training: per environment the IQM over the
    runs that kept it, then the median over environments."""
    per_env: dict[str, list[float]] = {}
    for group in mine:
        tables = [run.metrics() for run in group.finished]
        for reading in LAYER_READINGS:
            values = _finite([at_end(t, column) for t in tables
                              if (column := reading.column(t)) is not None])
            if values.size:
                per_env.setdefault(reading.key, []).append(float(iqm(values)))
    return {key: float(np.median(values)) for key, values in per_env.items()}


def _mean_poi(mine: list[Group], reference: dict[str, Group]) -> Estimate:
    """Mean over the environments both ran of P(learner > reference), final score."""
    pairs = [(g.values(FINAL), reference[g.setting.env].values(FINAL)) for g in mine
             if g.setting.env in reference]
    return average_probability_of_improvement(pairs) if pairs else Estimate(math.nan)


def _against(mine: list[Group], reference: dict[str, Group]
             ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(compared, higher, beats, loses)``: the environments where the learner and the
    ``reference`` (``frozen``, or the learner at the defaults) both have final scores; of
    those, where it is higher (P(> reference) > 0.5 and a higher IQM), and where it is
    higher (lower) at a Holm-adjusted Mann-Whitney p below SIGNIFICANCE, Holm over the
    compared environments."""
    pairs = [(g.setting.env, g.values(FINAL), reference[g.setting.env].values(FINAL))
             for g in mine if g.setting.env in reference]
    pairs = [(env, x, y) for env, x, y in pairs if x.size and y.size]
    pois = [probability_of_improvement(x, y).value for _, x, y in pairs]
    adjusted = holm([mann_whitney_p(x, y) if min(x.size, y.size) >= 2 else math.nan
                     for _, x, y in pairs])
    higher = tuple(env for (env, x, y), poi in zip(pairs, pois, strict=True)
                   if poi > 0.5 and iqm(x) > iqm(y))
    beats = tuple(env for (env, _, _), poi, p in zip(pairs, pois, adjusted, strict=True)
                  if p < SIGNIFICANCE and poi > 0.5)
    loses = tuple(env for (env, _, _), poi, p in zip(pairs, pois, adjusted, strict=True)
                  if p < SIGNIFICANCE and poi < 0.5)
    return tuple(env for env, _, _ in pairs), higher, beats, loses


def _cost(mine: list[Group], bp: dict[str, Group], attribute: str) -> Cost:
    """The learner's ``attribute`` (a time per iteration) over ``bp``'s, per environment
    where both were timed in the same sweep (runs of different sweeps ran under different
    loads), summarised over environments."""
    ratios = []
    for group in mine:
        reference = bp.get(group.setting.env)
        if reference is None:
            continue
        if len({r.sweep for r in group.finished + reference.finished}) > 1:
            continue
        times, bp_times = (_finite([getattr(r, attribute) for r in g.finished])
                           for g in (group, reference))
        if times.size and bp_times.size and np.median(bp_times) > 0:
            ratios.append(float(np.median(times) / np.median(bp_times)))
    if not ratios:
        return Cost(math.nan, math.nan, math.nan, 0)
    return Cost(float(np.median(ratios)), min(ratios), max(ratios), len(ratios))


def _finite(values: list[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]
