"""``lpdm report``: statistics, figures and verdicts of a sweep (or any folder of runs).

- :mod:`~lpdm.report.collect`: the runs covered;
- :mod:`~lpdm.report.stats`: IQM, bootstrap intervals, probability of improvement;
- :mod:`~lpdm.report.analysis`: per-setting statistics, stuck runs, verdicts against bp;
- :mod:`~lpdm.report.figures`: learning curves, distributions, profiles, wall time;
- :mod:`~lpdm.report.content` and :mod:`~lpdm.report.document`: the text, as Markdown/HTML;
- :mod:`~lpdm.report.profiles`: per-layer diagnostics, and each layer's at the end of training;
- :mod:`~lpdm.report.export`: ``scores.csv``, ``runs.csv`` and ``layer_profiles.csv``;
- :mod:`~lpdm.report.build`: all of it, into ``DIR/report/`` (:func:`build_report`);
- ``lpdm claims``: :mod:`~lpdm.report.claims` (the paper's claims and the data and test of
  each), :mod:`~lpdm.report.judge` (their statistics and verdict rules),
  :mod:`~lpdm.report.bench_tables` (``lpdm bench``'s tables read back) and
  :mod:`~lpdm.report.claims_page` (the table, and the page block that holds it).

The package itself imports nothing, so that ``lpdm --help`` stays fast.
"""
