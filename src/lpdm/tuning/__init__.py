"""``lpdm tune``: equal-budget hyperparameter search on held-out seeds (docs/design.md §7).

- :mod:`~lpdm.tuning.space`: the search space of an algorithm and a learner, and how a
  trial draws from it;
- :mod:`~lpdm.tuning.study`: a study in an Optuna database, its trials (each a population
  of held-out seeds), pruning, and what it writes (``best.json``, ``trials.csv``, figures);
- :mod:`~lpdm.tuning.command`: the command line.
"""
