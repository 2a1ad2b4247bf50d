"""What the report says: the analysis turned into headings, verdicts and tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lpdm.config import ALGORITHM_SECTIONS, FIXED_SECTIONS, OPTIONS
from lpdm.learners.spec import find_spec, learner_specs
from lpdm.report.analysis import (
    BASELINE,
    CONTROL,
    OUTCOMES,
    SCORES,
    Analysis,
    Group,
    Verdict,
    at_defaults,
    threshold_key,
)
from lpdm.report.document import Block, Bullets, Details, Figure, Heading, Paragraph, Table
from lpdm.report.records import option_text, relative_path
from lpdm.report.stats import (
    CONFIDENCE,
    RESAMPLES,
    SIGNIFICANCE,
    Estimate,
    smallest_mann_whitney_p,
)
from lpdm.scores import FINAL_FRACTION, MOVING_AVERAGE_WINDOW
from lpdm.sweeps.grid import short_variant

SCORE_NAMES = {"final_score": "final score", "max_score": "max score",
               "eval_score": "eval score"}


def number(value: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def estimate(value: Estimate, digits: int = 1) -> str:
    """``12.3 [10.1, 14.0]``, or the value alone when there is no interval."""
    text = number(value.value, digits)
    if value.has_interval:
        text += f" [{number(value.low, digits)}, {number(value.high, digits)}]"
    return text


def tests(n: int) -> str:
    """``1 test``, ``8 tests``."""
    return f"{n} test" + ("" if n == 1 else "s")


def _where(verdict: Verdict) -> str:
    s = verdict.setting
    return f"{s.env} with {s.algo}" + (f" ({short_variant(s.variant)})" if s.variant else "")


def _clause(v: Verdict) -> str:
    """How ``v.learner`` does against the reference on one score, with the numbers."""
    score, ref = SCORE_NAMES[v.score], v.reference
    numbers = (f"(IQM {estimate(v.iqm)} vs {estimate(v.reference_iqm)}; "
               f"P({v.learner} > {ref}) = {estimate(v.poi, 2)}; p = {number(v.p_value, 3)}, "
               f"Holm-adjusted over {tests(v.tests)} {number(v.p_adjusted, 3)})")
    text = {"loses": f"**loses to {ref} in {score}**",
            "beats": f"**beats {ref} in {score}**",
            "lower, not significant": f"scores lower than {ref} in {score}, not significantly",
            "higher, not significant": f"scores higher than {ref} in {score}, not significantly",
            "no clear difference": f"shows no clear difference from {ref} in {score}",
            "too few runs": f"cannot be compared with {ref} in {score}: too few runs"}
    return f"{text[v.outcome]} {numbers}"


def verdict_sentences(verdicts: list[Verdict]) -> list[str]:
    """One plain sentence per learner and setting, covering every score."""
    pairs = dict.fromkeys((v.setting, v.learner, v.reference) for v in verdicts)
    sentences = []
    for setting, learner, reference in pairs:
        mine = [v for v in verdicts if (v.setting, v.learner, v.reference)
                == (setting, learner, reference)]
        sentences.append(f"{learner} on {_where(mine[0])}: "
                         + "; ".join(_clause(v) for v in mine) + ".")
    return sentences


def tally(verdicts: list[Verdict]) -> Table:
    """Per family (a comparison on one score under one algorithm): how many settings the
    learner loses, ties, wins against the reference after Holm's correction over the
    family's tests, and how many raw p-values were under SIGNIFICANCE."""
    rows = []
    for family in dict.fromkeys(v.family for v in verdicts):
        learner, reference, score, algo = family
        mine = [v for v in verdicts if v.family == family]
        rows.append((f"{learner} vs {reference}", algo, SCORE_NAMES[score],
                     *(str(sum(v.outcome == o for v in mine)) for o in OUTCOMES),
                     str(sum(v.p_value < SIGNIFICANCE for v in mine)), str(mine[0].tests)))
    return Table(("comparison", "algorithm", "score", *OUTCOMES, f"raw p < {SIGNIFICANCE}",
                  "Holm over (tests)"), tuple(rows))


def correction_note(analysis: Analysis) -> str:
    """How the verdicts were corrected, and, when no difference survives the correction,
    that plainly, with the reason (too few runs for Holm over that many tests)."""
    text = (f"p-values are corrected with Holm-Bonferroni over each family of tests: the "
            f"settings (environments, and variants) of one comparison on one score under one "
            f"algorithm ({tests(max(v.tests for v in analysis.verdicts))} at most here). "
            f"loses/beats need an adjusted p < {SIGNIFICANCE}; the verdicts in words and "
            "scores.csv give both the raw and the adjusted p.")
    judged = [v for v in analysis.verdicts if math.isfinite(v.p_adjusted)]
    if any(v.outcome in ("loses", "beats") for v in judged):
        return text
    raw = sum(v.p_value < SIGNIFICANCE for v in judged)
    text += " **No per-setting difference is significant after the correction**" + (
        f" ({raw} raw p-value{'s' if raw > 1 else ''} under {SIGNIFICANCE})." if raw else ".")
    if judged:
        v = max(judged, key=lambda v: v.tests)
        n = len(analysis.group(v.setting, v.learner).values(v.score))
        smallest = smallest_mann_whitney_p(n, n)
        if smallest * v.tests >= SIGNIFICANCE:
            text += (f" With {n} runs against {n} the smallest p a Mann-Whitney test can give "
                     f"is {smallest:.4f}, and Holm over {tests(v.tests)} needs one under "
                     f"{SIGNIFICANCE / v.tests:.4f}: no single setting can show a difference.")
    if analysis.aggregates:
        text += (" Read the aggregate across environments instead (Across environments: mean "
                 f"P(> {BASELINE}) and P(> {CONTROL}) with stratified intervals).")
    return text


# A verdict as a matrix cell: a symbol, and the CSS class that colours it.
MARKS = {"loses": ("▼▼", "loses"), "lower, not significant": ("▼", "lower"),
         "no clear difference": ("=", "same"), "higher, not significant": ("▲", "higher"),
         "beats": ("▲▲", "beats"), "too few runs": ("·", "few")}
SHORT = {"final_score": "final", "max_score": "max"}


def verdict_matrix(analysis: Analysis) -> Table:
    """Rows: settings; columns: each comparison on each score; cells: the outcome (a
    symbol, coloured in HTML) with P(learner > reference)."""
    columns = [(learner, reference, score) for learner, reference in analysis.comparisons
               for score in SCORES]
    found = {(v.setting, v.learner, v.reference, v.score): v for v in analysis.verdicts}
    rows, classes = [], []
    for setting in analysis.settings:
        cells, styles = [setting.label], [""]
        for learner, reference, score in columns:
            verdict = found.get((setting, learner, reference, score))
            if verdict is None:  # a learner without a single run that has this score
                cells.append("n/a")
                styles.append("")
                continue
            mark, css = MARKS[verdict.outcome]
            cells.append(f"{mark} {number(verdict.poi.value, 2)}")
            styles.append(css)
        rows.append(tuple(cells))
        classes.append(tuple(styles))
    header = ("setting", *(f"{lr} vs {ref} · {SHORT[score]}" for lr, ref, score in columns))
    return Table(header, tuple(rows), tuple(classes))


MATRIX_LEGEND = ("Each cell: the outcome and P(learner > reference), the probability that a "
                 "run of the learner scores higher than a run of the reference. ▼▼ **loses** "
                 "and ▲▲ **beats**: a two-sided Mann-Whitney U test finds a difference "
                 f"(Holm-adjusted p < {SIGNIFICANCE}, over the settings of the column under "
                 "the row's algorithm: the tally's last column gives how many tests); ▼ "
                 "lower and ▲ higher: not significant (P and the "
                 "IQMs agree on the direction); = no clear difference; · too few runs; n/a: no "
                 "run has this score (e.g. no episode ended in the last 10% of training).")
DEFAULTS_LEGEND = (" *X at defaults*: learner X in the same environment and algorithm without "
                   "the row's swept options (e.g. trained from scratch, against a trunk given "
                   "by `--init-trunk`; dense matching, against `--sparse true`).")


def matrix_legend(analysis: Analysis) -> str:
    defaults = any(v.reference == at_defaults(v.learner) for v in analysis.verdicts)
    return MATRIX_LEGEND + (DEFAULTS_LEGEND if defaults else "")


def ratio_table(analysis: Analysis) -> Table:
    rows = tuple((r.setting.label, SCORE_NAMES[r.score],
                  estimate(r.ratio, 2) if math.isfinite(r.ratio.value)
                  else "not defined: not every score is positive")
                 for r in analysis.ratios)
    learner, reference = (analysis.ratios[0].learner, analysis.ratios[0].reference)
    return Table(("setting", "score", f"IQM {learner} / IQM {reference} [CI]"), rows)


def _headline(analysis: Analysis, score: str) -> Table:
    learners = analysis.learners
    rows = []
    for setting in analysis.settings:
        cells = []
        for learner in learners:
            group = analysis.group(setting, learner)
            cells.append(estimate(group.scores[score].iqm) if group else "")
        rows.append((setting.label, *cells))
    return Table(("setting", *learners), tuple(rows))


def score_tables(analysis: Analysis) -> list[Block]:
    """The paper's Table 2: per setting and learner, the IQM [95% CI] of both scores."""
    return [Paragraph(f"**Final score**, IQM [{CONFIDENCE:.0%} CI] over seeds:"),
            _headline(analysis, "final_score"),
            Paragraph(f"**Max score**, IQM [{CONFIDENCE:.0%} CI] over seeds:"),
            _headline(analysis, "max_score"),
            Paragraph(f"**Eval score** (deterministic policy; not judged, since an argmax can "
                      f"flatter a weak policy), IQM [{CONFIDENCE:.0%} CI] over seeds:"),
            _headline(analysis, "eval_score")]


def headline_tables(analysis: Analysis) -> list[Block]:
    """What ``lpdm report`` prints: the score tables, and the aggregate across environments
    (when there are several)."""
    return score_tables(analysis) + aggregate_blocks(analysis)


def _poi(group: Group, reference: str, score: str) -> str:
    value = group.versus.get(reference, {}).get(score)
    return estimate(value, 2) if value is not None else ""


def _detail_rows(analysis: Analysis) -> tuple[tuple[str, ...], ...]:
    rows = []
    for group in analysis.groups:
        row = [group.setting.label, group.learner, f"{len(group.finished)}/{len(group.runs)}"]
        for score in ("final_score", "max_score", "eval_score"):
            s = group.scores[score]
            row += [f"{number(s.mean.value)} ± {number(s.std)}", estimate(s.median),
                    estimate(s.iqm)]
        row += [number(100 * group.stuck_fraction, 0) + ("%" if
                math.isfinite(group.stuck_fraction) else ""),
                _poi(group, "bp", "final_score"), _poi(group, "bp", "max_score"),
                _poi(group, "frozen", "final_score")]
        rows.append(tuple(row))
    return tuple(rows)


DETAIL_COLUMNS = ("setting", "learner", "runs", "final mean ± std", "final median [CI]",
                  "final IQM [CI]", "max mean ± std", "max median [CI]", "max IQM [CI]",
                  "eval mean ± std", "eval median [CI]", "eval IQM [CI]",
                  "stuck", "P(> bp) final", "P(> bp) max", "P(> frozen) final")


def _steps(value: float) -> str:
    if math.isinf(value):
        return "never"
    return f"{value / 1000:.0f}k" if math.isfinite(value) else "n/a"


def _steps_estimate(value: Estimate) -> str:
    text = _steps(value.value)
    if value.has_interval or (math.isinf(value.low) and math.isinf(value.high)):
        text += f" [{_steps(value.low)}, {_steps(value.high)}]"
    return text


def stability_table(analysis: Analysis) -> Table:
    """Per setting and learner: stuck runs, and the steps to the environment's threshold."""
    rows = []
    for group in analysis.groups:
        reached = np.isfinite(group.steps_to_threshold)
        ratio = analysis.time_ratio(group.setting, group.learner)
        rows.append((group.setting.label, group.learner,
                     _percent(group.stuck),
                     _steps_estimate(group.convergence),
                     f"{int(reached.sum())}/{reached.size}" if reached.size else "",
                     estimate(ratio, 2) if ratio is not None else ""))
    return Table(("setting", "learner", "stuck [CI]", "steps to threshold, median [CI]",
                  "reached", "time per iteration / bp [CI]"), tuple(rows))


def _percent(value: Estimate) -> str:
    if not math.isfinite(value.value):
        return ""
    text = f"{100 * value.value:.0f}%"
    if value.has_interval:
        text += f" [{100 * value.low:.0f}%, {100 * value.high:.0f}%]"
    return text


def _thresholds(analysis: Analysis) -> str:
    parts = []
    for (env, algo), value in analysis.thresholds.items():
        how = "given" if analysis.threshold_given[env, algo] else "default"
        parts.append(f"{threshold_key(env, algo)} {number(value)} ({how})")
    return ("A run is **stuck** when its final score is under the threshold of its environment "
            "and algorithm: " + "; ".join(parts) + ". The default is half-way from "
            "min(0, the lowest final score) to the best learner's median final score, over "
            "the runs of that environment and algorithm (half that median when no score is "
            "negative); set one with --stuck-threshold ENV=VALUE (every algorithm) or "
            "ENV:ALGO=VALUE.")


def _optional(value: Estimate | None) -> str:
    return estimate(value, 2) if value is not None else ""


def _aggregate_table(analysis: Analysis) -> Table:
    rows = []
    for a in analysis.aggregates:
        rows.append((a.algo + (f" · {short_variant(a.variant)}" if a.variant else ""), a.learner,
                     str(a.environments), estimate(a.normalised_iqm, 2),
                     _optional(a.versus_bp), _optional(a.versus_frozen)))
    return Table(("algorithm", "learner", "environments", "IQM of normalised final score [CI]",
                  f"mean P(> {BASELINE}) [CI]", f"mean P(> {CONTROL}) [CI]"), tuple(rows))


def normalisation_text(analysis: Analysis) -> str:
    """Which normalisation each algorithm's final scores got (algorithms normalised alike
    named together)."""
    alike: dict[str, list[str]] = {}
    for algo, normalisation in analysis.normalisation.items():
        alike.setdefault(normalisation.describe(), []).append(algo)
    return "Normalisation: " + "; ".join(f"{', '.join(algos)}: {text}"
                                         for text, algos in alike.items()) + "."


def aggregate_blocks(analysis: Analysis) -> list[Block]:
    """The aggregate table across environments, with what its normalisation was (none
    with a single environment)."""
    if not analysis.aggregates:
        return []
    return [Paragraph("**Across environments**: the IQM of the normalised final scores, "
                      f"pooled, and the mean over environments of P(learner > {BASELINE}) and "
                      f"of P(learner > {CONTROL}) (final score); the intervals resample each "
                      "environment's runs separately (stratified bootstrap). "
                      + normalisation_text(analysis)),
            _aggregate_table(analysis)]


def _timing_table(analysis: Analysis) -> Table:
    rows = []
    for group in analysis.groups:
        rows.append((group.setting.label, group.learner,
                     number(1000 * group.mean_of("seconds_per_iteration")),
                     number(1000 * group.mean_of("update_seconds_per_iteration")),
                     number(1000 * group.mean_of("seconds_per_1k_steps"))))
    return Table(("setting", "learner", "ms per iteration", "update ms per iteration",
                  "ms per 1000 steps"), tuple(rows))


# options that name a run rather than configure it
NOT_SETTINGS = ("--seed", "--learner", "--env", "--algo")  # in the setting's name already


def _defaults() -> dict[str, str | None]:
    """Each flag's default as a run's config.json writes it; None where it is chosen per
    algorithm or action space (or differs between the sections that share the flag)."""
    return {f.flag: option_text(f.default) if f.default is not None and
            len({repr(o.default) for o in f.options}) == 1 else None for f in OPTIONS.values()}


def _flag_sections() -> dict[str, set[str]]:
    return {f.flag: set(f.sections) for f in OPTIONS.values()}


def _applies(flag: str, learner: str, flag_sections: dict[str, set[str]]) -> bool:
    """Whether ``flag`` (of ``flag_sections``) changes what ``learner`` does: the
    distance-matching options act on the learners that match distances, a learner's own
    options on it alone (a flag this lpdm does not know, from an old archive, and a learner
    unknown here: yes)."""
    spec, owners = find_spec(learner), flag_sections.get(flag)
    if spec is None or owners is None:
        return True
    acting = {"", *(cls.section for cls in FIXED_SECTIONS if cls.section != "local"),
              *ALGORITHM_SECTIONS, *(cls.section for cls in spec.options)}
    if spec.distance_matching:
        acting.add("local")
    return bool(owners & acting)


def _group_options(group: Group, flag_sections: dict[str, set[str]]) -> dict[str, str]:
    """Each option's value over the group's runs ("a | b" where its runs differ); options
    that do not act on the group's learner are left out."""
    values: dict[str, list[str]] = {}
    for run in group.runs:
        for flag, value in run.options().items():
            if not _applies(flag, group.learner, flag_sections):
                continue
            values.setdefault(flag, [])
            if value not in values[flag]:
                values[flag].append(value)
    return {flag: " | ".join(v) for flag, v in values.items()}


def settings_text() -> str:
    matching = [f"`{name}`" for name, spec in learner_specs().items() if spec.distance_matching]
    return ("Options whose values differ between the learners of a setting, between its "
            "seeds, or from lpdm's defaults, from the runs' `config.json`; every other "
            "option is the default, or chosen per algorithm and the same for all. –: "
            "the option does not act on that learner (the distance-matching options act on "
            f"{', '.join(matching)} only, a learner's own options on it alone).")
SAME_SETTINGS = ("Every learner of a setting ran with lpdm's defaults (from the runs' "
                 "`config.json`).")


def settings_table(analysis: Analysis) -> Table | None:
    """Per setting, the options whose values differ between learners, between seeds or
    from their defaults (from the runs' ``config.json``; "–": the option does not act on
    that learner); None when every run of a setting ran with the defaults alike."""
    learners = analysis.learners
    defaults, flag_sections = _defaults(), _flag_sections()
    rows = []
    for setting in analysis.settings:
        options = {g.learner: _group_options(g, flag_sections) for g in analysis.groups
                   if g.setting == setting}
        flags = dict.fromkeys(flag for values in options.values() for flag in values)
        for flag in flags:
            if flag in NOT_SETTINGS:
                continue
            values = {options[lr][flag] for lr in options if flag in options[lr]}
            default = defaults.get(flag)
            if len(values) > 1 or any(" | " in v for v in values) or \
                    (default is not None and values and values != {default}):
                rows.append((setting.label, f"`{flag}`",
                             *(options[lr].get(flag, "–") if lr in options else ""
                               for lr in learners)))
    return Table(("setting", "option", *learners), tuple(rows)) if rows else None


def _left_out(analysis: Analysis, source: Path) -> list[Block]:
    runs = analysis.unfinished
    if not runs:
        return [Paragraph("Every run finished.")]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    rows = tuple((relative_path(run.path, source), run.status, run.error) for run in runs)
    return [Paragraph(f"**{len(runs)} run(s) did not finish and are left out of every "
                      f"statistic** ({summary}):"), Table(("run", "status", "error"), rows)]


def compose(analysis: Analysis, figures: list[Figure], source: Path) -> list[Block]:
    """The whole report, top to bottom: the overview figure and the verdict matrix first,
    the sentences behind them folded away, then tables, figures, timing and left-out runs."""
    runs = analysis.runs
    finished = sum(r.finished for r in runs)
    overview = [f for f in figures if f.filename == OVERVIEW_FIGURE]
    others = [f for f in figures if f.filename != OVERVIEW_FIGURE]
    blocks: list[Block] = [
        Heading(f"lpdm report: {source.name}", 1),
        Paragraph(f"{len(runs)} runs in {source}: {finished} finished, "
                  f"{len(runs) - finished} not (listed at the end, left out of the "
                  f"statistics). **max score**: the highest {MOVING_AVERAGE_WINDOW}-episode "
                  f"moving average of training returns; **final score**: the mean "
                  f"training return of the episodes ending in the last {FINAL_FRACTION:.0%} "
                  f"of steps (the same stochastic policy); **eval score**: the mean "
                  f"deterministic evaluation return over the last {FINAL_FRACTION:.0%}, shown "
                  f"but not judged (an argmax can flatter a weak policy). Intervals are "
                  f"{CONFIDENCE:.0%} percentile bootstrap intervals "
                  f"({RESAMPLES} resamples); P(A > B) is the probability that a run of A "
                  f"scores higher than a run of B (ties count half). A learner **loses** "
                  f"(**beats**) another when a two-sided Mann-Whitney U test finds a "
                  f"difference (p < {SIGNIFICANCE} after Holm-Bonferroni correction over the "
                  f"settings of that comparison, score and algorithm) and P is below (above) "
                  f"0.5. With few seeds no difference can be significant (3 runs against 3: "
                  f"p >= 0.1), and the bootstrap intervals are then too narrow to trust."),
        *overview,
        Heading("Verdict"),
    ]
    if analysis.verdicts:
        blocks += [verdict_matrix(analysis), Paragraph(matrix_legend(analysis)),
                   Paragraph(correction_note(analysis)), tally(analysis.verdicts),
                   Details("Every verdict in words, with its numbers",
                           (Bullets(tuple(verdict_sentences(analysis.verdicts))),))]
    else:
        blocks.append(Paragraph(f"No comparison: the runs hold no pair of learners with "
                                f"finished runs in one setting (e.g. {BASELINE} and another)."))
    if analysis.ratios:
        blocks += [Heading("Guided over unguided"),
                   Paragraph("The paper reports L_g (lpdm-guided) at 1.43-1.85x L_u (lpdm) on "
                             "Hopper-v4. Ratio of IQMs; the interval resamples each "
                             "learner's runs on their own. Defined where every score is positive "
                             "(with negative returns a ratio above 1 would mean worse)."),
                   ratio_table(analysis)]
    settings = settings_table(analysis)
    blocks += [Heading("Settings"), Paragraph(settings_text() if settings else SAME_SETTINGS)]
    if settings:
        blocks.append(settings)
    blocks += [Heading("Scores (as the paper's Table 2)"), *score_tables(analysis)]
    if analysis.aggregates:
        blocks += [Heading("Across environments"), *aggregate_blocks(analysis)]
    blocks += [Heading("Scores in detail"), Table(DETAIL_COLUMNS, _detail_rows(analysis)),
               Paragraph(_thresholds(analysis)),
               Heading("Stability, convergence and cost"),
               Paragraph("Stuck: the fraction of runs whose final score is under the "
                         "environment's threshold. Steps to threshold: environment steps "
                         f"until the {MOVING_AVERAGE_WINDOW}-episode mean training return "
                         "first reached the same threshold (never: it did not, within the "
                         "budget); the median over runs with a bootstrap interval. Time per "
                         "iteration: the learner's mean wall time per iteration over bp's, "
                         "shown only where both ran in one sweep (which shares the machine "
                         "between them; separate sweeps ran under other loads). A "
                         "REINFORCE iteration is a whole episode, whose length changes "
                         "with the policy, so its ratios mix cost with how long episodes "
                         "last; PPO's iterations are the same length for every learner."),
               stability_table(analysis), Heading("Figures"), *others,
               Heading("Wall time"),
               Paragraph("Averages over finished runs. Runs of a sweep share the machine's "
                         "cores (and, in a population, a process), so compare learners "
                         "within one sweep only."),
               _timing_table(analysis), Heading("Runs left out"),
               *_left_out(analysis, source)]
    return blocks


OVERVIEW_FIGURE = "overview.png"
