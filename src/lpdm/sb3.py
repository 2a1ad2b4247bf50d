"""Stable-Baselines3 integration: a features extractor whose trunk learns by LPDM.

``policy_kwargs=dict(features_extractor_class=LPDMExtractor, net_arch=[])`` makes any SB3
algorithm with an MLP policy (PPO, A2C, DQN, SAC, TD3, ...) train its feature trunk by
local distance matching instead of backpropagation (``pip install 'lpdm[sb3]'``):

- on a training forward (the module in training mode, gradients enabled: the batches SB3
  evaluates its losses on) the trunk runs its local update and returns its features
  detached, so SB3's loss trains the heads only; rollouts (SB3 switches the policy to
  evaluation mode) and target computations (no gradients) only read the trunk;
- ``guided=True`` matches reward-guided distances, from the returns or advantages of
  on-policy algorithms: pass ``callback=LPDMGuidance("returns")`` (or ``"advantages"``) to
  ``learn``, which hands each training minibatch's values to the extractor;
- the trunk's own optimizer is part of the policy's ``state_dict``, so ``save``/``load``
  round-trip it.

Each forward with gradients in training mode is one local step: where an algorithm
evaluates the extractor more than once per minibatch (SAC's separate actor and critic
extractors, say), each of those is a step on that batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor

from lpdm.local import LocalTrunk

SIGNALS = ("returns", "advantages")


class LPDMExtractor(BaseFeaturesExtractor):
    """A :class:`~lpdm.local.LocalTrunk` as an SB3 features extractor.

    ``hidden_sizes``: the trunk's tanh layers (the features are the last layer's); ``lr``:
    its local Adam's learning rate; ``guided``: reward-guided matching (needs
    :class:`LPDMGuidance`); ``seed``: its initialisation; further keyword arguments are
    :class:`~lpdm.config.LocalConfig` options (``scale="max"``, ``sparse=True``, ...).
    """

    def __init__(self, observation_space: gym.Space, hidden_sizes: Sequence[int] = (128, 256),
                 lr: float = 3e-4, guided: bool = False, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(observation_space, int(hidden_sizes[-1]))
        self.trunk = LocalTrunk(get_flattened_obs_dim(observation_space), hidden_sizes, lr=lr,
                                guided=guided, seeds=(seed,), **options)
        self.performance: Tensor | None = None  # set by LPDMGuidance for the next batch

    def forward(self, observations: Tensor) -> Tensor:
        x = observations.flatten(1).float()
        if not (self.training and torch.is_grad_enabled()):
            return self.trunk(x)
        if not self.trunk.guided:
            return self.trunk.learn(x)
        if self.performance is None:
            raise RuntimeError("a guided LPDMExtractor learns from returns or advantages: "
                               "train with model.learn(..., callback=LPDMGuidance()) on an "
                               "on-policy algorithm")
        performance, self.performance = self.performance, None
        return self.trunk.learn(x, performance.flatten().to(x.device))


class LPDMGuidance(BaseCallback):
    """Hands each training minibatch's ``returns`` or ``advantages`` to the guided
    :class:`LPDMExtractor` s of an on-policy algorithm (PPO, A2C)."""

    def __init__(self, signal: str = "returns") -> None:
        super().__init__()
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
        self.signal = signal

    def _on_training_start(self) -> None:
        buffer = getattr(self.model, "rollout_buffer", None)
        if buffer is None:
            raise ValueError("LPDMGuidance needs an on-policy algorithm (PPO, A2C): "
                             f"{type(self.model).__name__} has no rollout buffer")
        extractors = [m for m in self.model.policy.modules() if isinstance(m, LPDMExtractor)]
        batches = buffer.get
        signal = self.signal

        def get(batch_size: int | None = None):
            for data in batches(batch_size):
                for extractor in extractors:
                    extractor.performance = getattr(data, signal)
                yield data

        buffer.get = get

    def _on_step(self) -> bool:
        return True
