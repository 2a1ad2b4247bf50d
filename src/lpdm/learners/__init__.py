"""Learners: how a trunk is trained, one module each (docs/design.md §2).

- :mod:`~lpdm.learners.spec`: :class:`LearnerSpec` and the registry (built-ins, plugins);
- :mod:`~lpdm.learners.base`: the :class:`Learner` an algorithm talks to;
- ``bp``, ``lpdm``, ``lpdm_guided``, ``frozen``, ``linear``, ``lpdm_metric``, ``dfa``,
  ``layerwise``: the learners.

A new learner is one module: its class, its options section, its spec (:func:`register`).
"""

from lpdm.learners.base import Learner, LearnerContext, RLLoss, make_learner
from lpdm.learners.spec import (
           LearnerSpec,
           find_spec,
           get_spec,
           learner_names,
           learner_specs,
           register,
)

__all__ = ["Learner", "LearnerContext", "LearnerSpec", "RLLoss", "find_spec", "get_spec",
           "learner_names", "learner_specs", "make_learner", "register"]
