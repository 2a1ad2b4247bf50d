"""``lpdm-guided``: distance matching towards a reward-guided target (L_g, docs/design.md
§1): samples that did worse are pushed further from all others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lpdm.config import (
    GUIDANCE_STRENGTH,
    PPO_GUIDANCE_STRENGTH,
    Config,
    ConfigError,
    Section,
    option,
)
from lpdm.learners.base import LearnerContext
from lpdm.learners.lpdm import DISTANCE_MATCHING_SPACE, LocalLearner
from lpdm.learners.spec import LearnerSpec, register

# the performance signal each algorithm gives by default
DEFAULT_SIGNAL = {"reinforce": "returns", "ppo": "advantages", "dqn": "td"}
SIGNAL_ALGO = {"advantages": "ppo", "td": "dqn"}  # signals that only one algorithm has


@dataclass
class GuidanceConfig(Section):
    section: ClassVar[str] = "guidance"
    guidance_strength: float | None = option(
        None, "lpdm-guided: strength s of the reward guidance; default 0.3, PPO 0.1",
        check="non_negative")
    guidance_signal: str | None = option(
        None, "lpdm-guided, lpdm-metric (value form): performance per sample: returns "
        "(REINFORCE, PPO: returns-to-go; DQN: the Monte-Carlo return of the sample's episode), "
        "advantages (PPO) or td (DQN: the TD target); default returns, PPO advantages "
        "(lpdm-metric: returns), DQN td",
        ("returns", "advantages", "td"))

    def resolve(self, config: Config, discrete: bool) -> None:
        if self.guidance_strength is None:
            self.guidance_strength = (PPO_GUIDANCE_STRENGTH if config.algo == "ppo"
                                      else GUIDANCE_STRENGTH)
        if self.guidance_signal is None:
            self.guidance_signal = DEFAULT_SIGNAL[config.algo]

    def validate(self, config: Config) -> None:
        needs = SIGNAL_ALGO.get(self.guidance_signal)
        if needs and config.algo != needs:
            raise ConfigError(f"--guidance-signal {self.guidance_signal} needs --algo {needs}")


class GuidedLearner(LocalLearner):
    name = "lpdm-guided"
    guided = True

    @classmethod
    def trunk_options(cls, context: LearnerContext) -> dict[str, object]:
        strength = context.sections["guidance"].guidance_strength
        return {"guidance_strength": GUIDANCE_STRENGTH if strength is None else strength}


SPEC = register(LearnerSpec(
    name="lpdm-guided", summary="reward-guided distance matching, locally, per layer",
    build=GuidedLearner.build, options=(GuidanceConfig,), distance_matching=True, local=True,
    paper=True, references=("lpdm",), cost_rank=6, color="#2ca02c",
    search_space=DISTANCE_MATCHING_SPACE | {
        "guidance_strength": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}))
