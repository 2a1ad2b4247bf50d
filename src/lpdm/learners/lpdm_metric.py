"""``lpdm-metric``: distance matching towards task-aware targets (docs/design.md §2.4): the
value form pulls samples of similar performance together, the bisimulation form matches
reward gaps plus the discounted distances of the next observations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from lpdm.config import Config, ConfigError, Section, option
from lpdm.learners.base import LearnerContext
from lpdm.learners.lpdm import DISTANCE_MATCHING_SPACE, LocalLearner
from lpdm.learners.lpdm_guided import SIGNAL_ALGO
from lpdm.learners.spec import LearnerSpec, register

if TYPE_CHECKING:
    from torch import Tensor

    from lpdm.local import LocalTrunk

# the performance signal v of the value form, by algorithm: a value of the state (PPO: the
# critic's targets rather than the advantages, which are relative to the action taken)
DEFAULT_SIGNAL = {"reinforce": "returns", "ppo": "returns", "dqn": "td"}
DEFAULT_BETA = {"value": 0.5, "bisim": 1.0}  # bisim at 1: the bisimulation target itself


@dataclass
class MetricConfig(Section):
    section: ClassVar[str] = "task_metric"
    metric_form: str = option(
        "value", "lpdm-metric: the task term of the target: value gaps |v_i - v_j| (value) or "
        "reward gaps plus the discounted distances of the next observations (bisim, DQN only)",
        ("value", "bisim"))
    metric_beta: float | None = option(
        None, "lpdm-metric: weight of the task term, (1 - beta)*D_X + beta*term (0: lpdm); "
        "default value 0.5, bisim 1", check="unit")
    metric_gamma: float | None = option(
        None, "lpdm-metric bisim: discount of the next observations' distances; default "
        "--gamma", check="unit")
    metric_tau: float = option(
        0.05, "lpdm-metric bisim: rate of the slowly updated (Polyak) copy of the trunk that "
        "measures the next observations' distances", check="rate")
    guidance_signal: str | None = option(
        None, "lpdm-metric value form: the performance v per sample, as for lpdm-guided; "
        "default returns, DQN td", ("returns", "advantages", "td"))

    def resolve(self, config: Config, discrete: bool) -> None:
        if self.metric_beta is None:
            self.metric_beta = DEFAULT_BETA[self.metric_form]
        if self.metric_gamma is None:
            self.metric_gamma = config.gamma
        if self.guidance_signal is None:
            self.guidance_signal = DEFAULT_SIGNAL[config.algo]

    def validate(self, config: Config) -> None:
        if self.metric_form == "bisim" and config.algo != "dqn":
            raise ConfigError("--metric-form bisim needs --algo dqn: its target uses each "
                              "sample's reward and next observation, which only DQN's replay "
                              "batch holds")
        needs = SIGNAL_ALGO.get(self.guidance_signal)
        if needs and config.algo != needs:
            raise ConfigError(f"--guidance-signal {self.guidance_signal} needs --algo {needs}")


class MetricLearner(LocalLearner):
    """A :class:`~lpdm.metric.MetricTrunk`; under the bisimulation form it takes the
    batch's rewards and next observations from :meth:`set_transitions`."""

    name = "lpdm-metric"
    _rewards: Tensor | None = None
    _next_obs: Tensor | None = None

    @classmethod
    def trunk_type(cls) -> type[LocalTrunk]:
        from lpdm.metric import MetricTrunk

        return MetricTrunk

    @classmethod
    def trunk_options(cls, context: LearnerContext) -> dict[str, object]:
        own = context.sections["task_metric"]
        beta = DEFAULT_BETA[own.metric_form] if own.metric_beta is None else own.metric_beta
        options: dict[str, object] = {"form": own.metric_form, "beta": beta,
                                      "tau": own.metric_tau}
        if own.metric_gamma is not None:  # unresolved: the trunk's own default
            options["gamma"] = own.metric_gamma
        return options

    def set_transitions(self, rewards: Tensor, next_obs: Tensor) -> None:
        self._rewards, self._next_obs = rewards, next_obs

    def _take_transitions(self) -> dict[str, Tensor]:
        taken = {"rewards": self._rewards, "next_obs": self._next_obs}
        self._rewards = self._next_obs = None
        return taken

    def weights_loaded(self, members: Tensor) -> None:
        self.trunk.reset_copy(members)


SPEC = register(LearnerSpec(
    name="lpdm-metric", summary="task-aware (value or bisimulation) distance matching, "
    "locally, per layer", build=MetricLearner.build, options=(MetricConfig,),
    distance_matching=True, local=True, references=("lpdm",), cost_rank=7, color="#8c564b",
    # the form is a choice of method, not searched: bisim exists under DQN only, and a
    # trial refused for it would spend the budget (add it with ``lpdm tune --space``)
    search_space=DISTANCE_MATCHING_SPACE | {
        "metric_beta": {"type": "float", "low": 0.0, "high": 1.0}}))
