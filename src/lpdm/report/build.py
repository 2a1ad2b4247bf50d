"""Build a report directory: collect the runs, analyse them, write figures, text and CSV."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lpdm.errors import RunError
from lpdm.report import figures
from lpdm.report.analysis import Analysis, analyse
from lpdm.report.archive import ARCHIVE_FILE, write_archive
from lpdm.report.collect import REPORT_DIR, collect_runs
from lpdm.report.content import OVERVIEW_FIGURE, compose, headline_tables, normalisation_text
from lpdm.report.document import Figure, to_html, to_markdown
from lpdm.report.export import write_layer_profiles, write_runs, write_scores

FIGURES = (
    (OVERVIEW_FIGURE, figures.overview,
     "Overview: final score of every learner under every algorithm, one panel per "
     "environment (bars: IQM with its 95% bootstrap interval; dots: runs)."),
    ("learning_curves.png", figures.learning_curves,
     "Learning curves: IQM across seeds of the training return (10-episode moving "
     "average), with 95% bootstrap bands."),
    ("score_distributions.png", figures.score_distributions,
     "Score distributions per setting (as the paper's figure 2): one point per run, violins "
     "where runs differ; the dashed line is the stuck threshold."),
    ("performance_profiles.png", figures.performance_profiles,
     "Performance profiles: fraction of runs whose normalised final score exceeds τ "
     "(averaged over environments), with 95% stratified bootstrap bands. {normalisation}"),
    ("diagnostics.png", figures.diagnostics,
     "Per-layer diagnostics of the policy network over training, IQM across seeds (layer 1 "
     "dashed, the last layer solid): the fraction of saturated tanh units, the correlation "
     "between target and output distances, the entropy of the normalised distance "
     "distribution (1: all pairs equally far apart; low: collapse onto a few pairs), and, "
     "where a learner logs it, the cosine between its trunk update and backpropagation's "
     "(dfa)."),
    ("layer_profiles.png", figures.layer_profiles,
     "Each layer of the policy network at the end of training (mean over the last 10% of "
     "steps, IQM across seeds) against its depth: saturation, distance correlation, "
     "distance entropy, and the norm of the gradient reaching its weights (the local "
     "loss's under the local learners, the RL loss's under bp). Drawn for networks of 3 "
     "layers or more."),
    ("wall_time.png", figures.wall_time,
     "Wall time per iteration (light: whole iteration, hatched: the update) and per 1000 "
     "environment steps, mean over finished runs."),
)


@dataclass(frozen=True)
class Report:
    directory: Path
    analysis: Analysis

    @property
    def html(self) -> Path:
        return self.directory / "index.html"

    @property
    def markdown(self) -> Path:
        return self.directory / "report.md"

    def headline(self) -> str:
        """The headline tables as Markdown (what ``lpdm report`` prints)."""
        return to_markdown(headline_tables(self.analysis))


def build_report(source: Path | list[Path], out: Path | None = None,
                 stuck_thresholds: dict[str, float] | None = None) -> Report:
    """Write the report of the runs under ``source`` into ``out`` (default
    ``source/report``); several sources (folders or archives) merge, and need ``out``."""
    sources = [Path(s) for s in source] if isinstance(source, list) else [Path(source)]
    if out is None and len(sources) > 1:
        raise RunError("a report of several sources needs --out")
    out = Path(out) if out is not None else _common_folder(sources) / REPORT_DIR
    analysis = analyse(collect_runs(*sources), stuck_thresholds)
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    for filename, draw, caption in FIGURES:
        (out / filename).unlink(missing_ok=True)
        if draw(analysis, out / filename):
            drawn.append(Figure(filename, caption.format(
                normalisation=normalisation_text(analysis))))
    base = _common_folder(sources)  # the report's paths are relative to it
    blocks = compose(analysis, drawn, base)
    title = " + ".join(s.name for s in sources)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "index.html").write_text(to_html(blocks, f"lpdm report: {title}", out))
    write_scores(out / "scores.csv", analysis)
    write_runs(out / "runs.csv", analysis, base)
    (out / "layer_profiles.csv").unlink(missing_ok=True)
    write_layer_profiles(out / "layer_profiles.csv", analysis)
    write_archive(out / ARCHIVE_FILE, analysis.runs, base)
    return Report(out, analysis)


def _common_folder(sources: list[Path]) -> Path:
    """The folder that holds every source (an archive stands for its folder)."""
    folders = [s.parent if s.is_file() else s for s in sources]
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:  # relative beside absolute paths
        return folders[0]


__all__ = ["Report", "build_report"]
