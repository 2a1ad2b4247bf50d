"""What the report says: the analysis turned into headings, verdicts and tables."""

from __future__ import annotations

import math
from pathlib import Path

from lpdm.evaluation import FINAL_FRACTION, MOVING_AVERAGE_WINDOW
from lpdm.report.analysis import BASELINE, CONTROL, OUTCOMES, Analysis, Group, Verdict
from lpdm.report.document import Block, Bullets, Figure, Heading, Paragraph, Table
from lpdm.report.stats import CONFIDENCE, RESAMPLES, SIGNIFICANCE, Estimate

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


def _where(verdict: Verdict) -> str:
    s = verdict.setting
    return f"{s.env} with {s.algo}" + (f" ({s.variant})" if s.variant else "")


def _clause(v: Verdict) -> str:
    """How ``v.learner`` does against the reference on one score, with the numbers."""
    score, ref = SCORE_NAMES[v.score], v.reference
    numbers = (f"(IQM {estimate(v.iqm)} vs {estimate(v.reference_iqm)}; "
               f"P({v.learner} > {ref}) = {estimate(v.poi, 2)}; p = {number(v.p_value, 3)})")
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
    """How many settings each learner loses, ties, wins against the reference, per score."""
    rows = []
    for learner, reference, score in dict.fromkeys((v.learner, v.reference, v.score)
                                                   for v in verdicts):
        mine = [v for v in verdicts if (v.learner, v.reference, v.score)
                == (learner, reference, score)]
        rows.append((f"{learner} vs {reference}", SCORE_NAMES[score],
                     *(str(sum(v.outcome == o for v in mine)) for o in OUTCOMES)))
    return Table(("comparison", "score", *OUTCOMES), tuple(rows))


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


def headline_tables(analysis: Analysis) -> list[Block]:
    """The paper's Table 2: per setting and learner, the IQM [95% CI] of both scores."""
    return [Paragraph(f"**Final score**, IQM [{CONFIDENCE:.0%} CI] over seeds:"),
            _headline(analysis, "final_score"),
            Paragraph(f"**Max score**, IQM [{CONFIDENCE:.0%} CI] over seeds:"),
            _headline(analysis, "max_score"),
            Paragraph(f"**Eval score** (deterministic policy; not judged, since an argmax can "
                      f"flatter a weak policy), IQM [{CONFIDENCE:.0%} CI] over seeds:"),
            _headline(analysis, "eval_score")]


def _poi(group: Group, store: str, score: str) -> str:
    value = getattr(group, store).get(score)
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
                _poi(group, "versus_bp", "final_score"), _poi(group, "versus_bp", "max_score"),
                _poi(group, "versus_frozen", "final_score")]
        rows.append(tuple(row))
    return tuple(rows)


DETAIL_COLUMNS = ("setting", "learner", "runs", "final mean ± std", "final median [CI]",
                  "final IQM [CI]", "max mean ± std", "max median [CI]", "max IQM [CI]",
                  "eval mean ± std", "eval median [CI]", "eval IQM [CI]",
                  "stuck", "P(> bp) final", "P(> bp) max", "P(> frozen) final")


def _thresholds(analysis: Analysis) -> str:
    parts = []
    for env, value in analysis.thresholds.items():
        how = "given" if analysis.threshold_given[env] else "default"
        parts.append(f"{env} {number(value)} ({how})")
    return ("A run is **stuck** when its final score is under its environment's threshold: "
            + "; ".join(parts) + ". The default is half the best learner's median final score "
            "(measured from min(0, the lowest final score), so that it also works for "
            "negative returns); set one with --stuck-threshold ENV=VALUE.")


def _aggregate_table(analysis: Analysis) -> Table:
    rows = []
    for a in analysis.aggregates:
        rows.append((a.algo + (f" · {a.variant}" if a.variant else ""), a.learner,
                     str(a.environments), estimate(a.normalised_iqm, 2),
                     estimate(a.versus_bp, 2) if a.versus_bp is not None else ""))
    return Table(("algorithm", "learner", "environments", "IQM of normalised final score [CI]",
                  "mean P(> bp) [CI]"), tuple(rows))


def _timing_table(analysis: Analysis) -> Table:
    rows = []
    for group in analysis.groups:
        rows.append((group.setting.label, group.learner,
                     number(1000 * group.mean_of("seconds_per_iteration")),
                     number(1000 * group.mean_of("update_seconds_per_iteration")),
                     number(1000 * group.mean_of("seconds_per_1k_steps"))))
    return Table(("setting", "learner", "ms per iteration", "update ms per iteration",
                  "ms per 1000 steps"), tuple(rows))


def _left_out(analysis: Analysis, source: Path) -> list[Block]:
    runs = analysis.unfinished
    if not runs:
        return [Paragraph("Every run finished.")]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    rows = tuple((str(run.path.relative_to(source)) if run.path.is_relative_to(source)
                  else str(run.path), run.status, run.error) for run in runs)
    return [Paragraph(f"**{len(runs)} run(s) did not finish and are left out of every "
                      f"statistic** ({summary}):"), Table(("run", "status", "error"), rows)]


def compose(analysis: Analysis, figures: list[Figure], source: Path) -> list[Block]:
    """The whole report, top to bottom."""
    runs = analysis.runs
    finished = sum(r.finished for r in runs)
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
                  f"difference (p < {SIGNIFICANCE}) and P is below (above) 0.5. With few "
                  f"seeds no difference can be significant (3 runs against 3: p >= 0.1), and "
                  f"the bootstrap intervals are then too narrow to trust."),
        Heading("Verdict"),
    ]
    if analysis.verdicts:
        blocks.append(tally(analysis.verdicts))
        blocks.append(Bullets(tuple(verdict_sentences(analysis.verdicts))))
    else:
        blocks.append(Paragraph(f"No comparison with {BASELINE}: the runs hold no pair of "
                                f"{BASELINE} and another learner with finished runs."))
    if analysis.control_verdicts:
        blocks.append(Paragraph(f"Against the {CONTROL} control (random features, only the "
                                "heads learn), which tells whether learning the trunk "
                                "helps at all:"))
        blocks.append(Bullets(tuple(verdict_sentences(analysis.control_verdicts))))
    blocks += [Heading("Scores (as the paper's Table 2)"), *headline_tables(analysis)]
    if analysis.aggregates:
        blocks += [Heading("Across environments"),
                   Paragraph("Final scores min-max normalised per environment, pooled; the "
                             "intervals resample each environment's runs separately "
                             "(stratified bootstrap)."), _aggregate_table(analysis)]
    blocks += [Heading("Scores in detail"), Table(DETAIL_COLUMNS, _detail_rows(analysis)),
               Paragraph(_thresholds(analysis)), Heading("Figures"), *figures,
               Heading("Wall time"),
               Paragraph("Averages over finished runs. Runs of a sweep share the machine's "
                         "cores, so compare learners within one sweep only."),
               _timing_table(analysis), Heading("Runs left out"),
               *_left_out(analysis, source)]
    return blocks
