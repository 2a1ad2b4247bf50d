"""Experiment configuration: sections of options, the single definition of every option.

A configuration is the experiment's own options (environment, algorithm, learner, seed,
budget), the sections every run has (``network``, ``local``: the distance-matching
reading, which also measures every learner's diagnostics, ``envs``, ``run``), the section
of its algorithm (:data:`ALGORITHM_SECTIONS`, e.g. ``ppo``: that algorithm's learning
rate, entropy bonus, clipping and its own options, with its own defaults) and the
sections its learner declares (``lpdm-guided``: ``guidance``). Option names may repeat
across sections where that reads naturally (``--lr`` is each algorithm's), and then share
one command-line flag; a flag is namespaced (``--SECTION-NAME``) only where two sections
give one name different types. ``lpdm train`` and ``lpdm sweep`` build their flags from
this table (:func:`flags`), so an option is defined once.

Fields left ``None`` take a default that depends on the action space or the observations;
:func:`resolve` fills them in, and the resolved configuration is what a run directory's
``config.json`` records, with its format (:data:`FORMAT`). Files of an older format are
migrated when read (:func:`migrate`), so old run directories and sweeps resume.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lpdm.errors import ConfigError

FORMAT = 2  # of config.json; 1: one flat namespace (lr in network, ent_coef at the top)
ALGOS = ("reinforce", "ppo", "dqn")
# Guidance strengths selected on held-out seeds (docs/method.md): PPO's advantages need a
# lighter touch than REINFORCE's returns.
GUIDANCE_STRENGTH = 0.3
PPO_GUIDANCE_STRENGTH = 0.1

__all__ = ["ConfigError"]  # re-exported: raised by every section's validation


# --------------------------------------------------------------------------- fields

# What a value must satisfy, checked for every option by :func:`validate` (one path for
# every option, so that no bad value reaches Python's or a library's own error).
CHECKS = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non_negative": (lambda v: v >= 0, "must not be negative"),
    "unit": (lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1]"),
    "rate": (lambda v: 0.0 < v <= 1.0, "must lie in (0, 1]"),
    "at_least_2": (lambda v: v >= 2, "must be at least 2"),
    "widths": (lambda v: bool(v) and all(w > 0 for w in v), "needs positive values"),
}


def option(default: Any, help: str, choices: tuple[str, ...] | None = None,
           check: str | None = None) -> Any:
    """A dataclass field that is a command-line option: its default, its help text, the
    values it may take, and the check (:data:`CHECKS`) its value must pass."""
    metadata: dict[str, Any] = {"help": help}
    if choices:
        metadata["choices"] = choices
    if check:
        metadata["check"] = check
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


class Section:
    """A section of options: a dataclass with a ``section`` name. ``resolve`` fills its
    ``None`` defaults, ``validate`` checks what one field's check cannot (several fields,
    the algorithm)."""

    section: ClassVar[str] = ""

    def resolve(self, config: Config, discrete: bool) -> None:
        """Fill the ``None`` defaults of this section (and those it decides elsewhere)."""

    def validate(self, config: Config) -> None:
        """Raise :class:`ConfigError` on values that cannot work together."""


# --------------------------------------------------------------------------- sections


@dataclass
class NetworkConfig(Section):
    section: ClassVar[str] = "network"
    hidden_sizes: tuple[int, ...] = option((128, 256), "hidden layer widths, comma separated",
                                           check="widths")
    hidden_lr: float | None = option(
        None, "learning rate of the trunk (RL loss under bp, local loss under lpdm); "
        "default: --lr", check="positive")
    trunk: str | None = option(None, "trunk architecture: dense layers, or convolutions then "
                               "dense layers; default conv for image observations",
                               ("dense", "conv"))
    conv_channels: tuple[int, ...] = option((16,), "conv trunk: output channels per "
                                            "convolution", check="widths")
    conv_kernels: tuple[int, ...] = option((3,), "conv trunk: kernel size per convolution "
                                           "(one value for all)", check="widths")
    conv_strides: tuple[int, ...] = option((1,), "conv trunk: stride per convolution (one "
                                           "value for all)", check="widths")
    init_trunk: str | None = option(
        None, "initialise the trunk(s) from the last checkpoint of this run directory (or, "
        "from a directory of members sSEED, the member with this run's seed); fresh runs only")

    def resolve(self, config: Config, discrete: bool) -> None:
        if self.hidden_lr is None:
            self.hidden_lr = config.algorithm.lr

    def validate(self, config: Config) -> None:
        for flag, values in (("--conv-kernels", self.conv_kernels),
                             ("--conv-strides", self.conv_strides)):
            if len(values) not in (1, len(self.conv_channels)):
                raise ConfigError(f"{flag}: give one value or one per convolution "
                                  f"({len(self.conv_channels)}), got {len(values)}")


@dataclass
class LocalConfig(Section):
    """Distance matching: how the local learners train their trunks, and how every
    learner's per-layer diagnostics are measured."""

    section: ClassVar[str] = "local"
    metric: str = option("l1", "distance metric of the local loss", ("l1", "l2", "cosine"))
    scale: str = option("dim", "distance scaling: per feature (dim), raw (none), by the "
                        "largest or mean distance (max, mean), or the paper's literal "
                        "D_X/out - D_Y/in (cross); which is best depends on the "
                        "environment (docs/method.md)", ("dim", "none", "max", "mean", "cross"))
    target_scale: float = option(1.0, "multiply the target distances by this factor (before "
                                 "guidance)", check="positive")
    target_mean: float | None = option(
        None, "rescale each block's target distances so that their mean over pairs is this "
        "value (before guidance): asks every layer for this mean distance per unit whatever "
        "the observations' scale (with --scale dim or none; does not beat dim across the "
        "suite, docs/method.md)", check="positive")
    target_obs: str = option("input", "build the global target from the trunk's input (input) "
                             "or from the observation before normalisation (raw; the same "
                             "without --norm-obs)", ("input", "raw"))
    target: str = option("global", "match the distances of the network input (global) or of "
                         "the layer's own input (local)", ("global", "local"))
    sparse: bool = option(False, "match only nearest/furthest pairs (paper appendix A)")
    quantile_low: float = option(0.25, "sparse matching: row quantile of nearest pairs",
                                 check="unit")
    quantile_high: float = option(0.75, "sparse matching: row quantile of furthest pairs",
                                  check="unit")
    distance_batch: int = option(128, "samples per distance matrix (N)", check="at_least_2")
    update_mode: str = option("fused", "for metrics/scales trained by autograd: one backward "
                              "over all layers' local losses (fused) or layer by layer with "
                              "flat memory (streaming); the default l1 path computes its "
                              "gradients in closed form, flat in memory either way",
                              ("fused", "streaming"))
    conv_distance: str = option("flat", "distances between a convolution's outputs: of the "
                                "flattened feature maps (flat) or of their per-channel means "
                                "(pooled)", ("flat", "pooled"))

    def validate(self, config: Config | None = None) -> None:
        if self.quantile_low > self.quantile_high:
            raise ConfigError("need --quantile-low <= --quantile-high, got "
                              f"{self.quantile_low}, {self.quantile_high}")
        check_target_options(self)


@dataclass
class EnvConfig(Section):
    section: ClassVar[str] = "envs"
    env_kwargs: str = option("", "keyword arguments of gymnasium.make, KEY=VALUE,... (values "
                             "read as Python literals; a sweep separates values by /)")
    image_layout: str = option("auto", "image observations: channels last (hwc) or first "
                               "(chw); auto: last unless the first axis is clearly the "
                               "channels", ("auto", "hwc", "chw"))
    num_envs: int | None = option(None, "parallel environments; default 1, PPO discrete 4",
                                  check="positive")
    async_envs: bool = option(False, "step environments in subprocesses")
    norm_obs: bool | None = option(None, "normalise observations; default on for PPO on Box "
                                   "actions, off otherwise")
    norm_reward: bool | None = option(None, "scale rewards by a running return std; default "
                                      "as --norm-obs")

    def resolve(self, config: Config, discrete: bool) -> None:
        if self.num_envs is None:
            self.num_envs = 1
        if self.norm_obs is None:
            self.norm_obs = False
        if self.norm_reward is None:
            self.norm_reward = self.norm_obs


@dataclass
class RunConfig(Section):
    section: ClassVar[str] = "run"
    eval_every: int | None = option(None, "steps between deterministic evaluations; "
                                    "default total/20", check="positive")
    eval_episodes: int = option(5, "episodes per evaluation", check="non_negative")
    checkpoint_every: int | None = option(None, "steps between checkpoints; default total/10",
                                          check="positive")
    threads: int = option(1, "torch threads", check="positive")
    device: str = option("cpu", "torch device", ("cpu", "cuda"))
    tensorboard: bool = option(False, "also log to TensorBoard (needs the tensorboard extra)")
    diagnostics: bool = option(True, "log per-layer loss, distance correlation and saturation")

    def resolve(self, config: Config, discrete: bool) -> None:
        if self.eval_every is None:
            self.eval_every = max(config.total_steps // 20, 1)
        if self.checkpoint_every is None:
            self.checkpoint_every = max(config.total_steps // 10, 1)


@dataclass
class AlgorithmConfig(Section):
    """What every algorithm has: the heads' learning rate (and the trunk's, by default) and
    per-member gradient clipping; ``search_space``, what ``lpdm tune`` searches for every
    learner under this algorithm (option name -> distribution, :mod:`lpdm.tuning.space`)."""

    search_space: ClassVar[dict[str, dict]] = {}

    lr: float | None = option(None, "learning rate of the heads (RL loss)", check="positive")
    max_grad_norm: float = option(0.0, "clip the RL gradient norm (0: off)",
                                  check="non_negative")


@dataclass
class ReinforceConfig(AlgorithmConfig):
    section: ClassVar[str] = "reinforce"
    search_space: ClassVar[dict[str, dict]] = {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "hidden_lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "episodes_per_update": {"type": "categorical", "choices": [1, 2, 4, 8]},
        "normalize_advantage": {"type": "categorical", "choices": [True, False]},
    }
    lr: float | None = option(1e-3, "learning rate of the heads (RL loss)", check="positive")
    ent_coef: float = option(0.0, "entropy bonus", check="non_negative")
    episodes_per_update: int = option(1, "REINFORCE: episodes per gradient step",
                                      check="positive")
    normalize_advantage: bool = option(True, "REINFORCE: divide returns minus baseline by "
                                       "their std")

    def validate(self, config: Config) -> None:
        if config.envs.num_envs != 1:
            raise ConfigError("REINFORCE runs one environment; --num-envs must be 1")


@dataclass
class PPOConfig(AlgorithmConfig):
    section: ClassVar[str] = "ppo"
    search_space: ClassVar[dict[str, dict]] = {
        "lr": {"type": "float", "low": 3e-5, "high": 3e-3, "log": True},
        "hidden_lr": {"type": "float", "low": 1e-5, "high": 3e-3, "log": True},
        "update_epochs": {"type": "int", "low": 1, "high": 10},
        "num_minibatches": {"type": "categorical", "choices": [4, 8, 16, 32]},
        "clip_coef": {"type": "float", "low": 0.1, "high": 0.3},
        "gae_lambda": {"type": "float", "low": 0.9, "high": 0.99},
    }
    lr: float | None = option(None, "learning rate of the heads (RL loss); default 2.5e-4 "
                              "discrete, 3e-4 continuous", check="positive")
    ent_coef: float | None = option(None, "entropy bonus; default 0.01 discrete, 0 continuous",
                                    check="non_negative")
    max_grad_norm: float = option(0.5, "clip the RL gradient norm (0: off)",
                                  check="non_negative")
    num_steps: int | None = option(None, "PPO: steps per environment per rollout; default "
                                   "2048 continuous, 128 discrete", check="positive")
    num_minibatches: int | None = option(None, "PPO: minibatches per epoch; default 32 "
                                         "continuous, 4 discrete", check="positive")
    update_epochs: int | None = option(None, "PPO: epochs per rollout; default 10 continuous, "
                                       "4 discrete", check="positive")
    gae_lambda: float = option(0.95, "PPO: GAE lambda", check="unit")
    clip_coef: float = option(0.2, "PPO: surrogate clipping", check="positive")
    clip_vloss: bool = option(True, "PPO: clip the value loss")
    vf_coef: float = option(0.5, "PPO: value loss coefficient", check="non_negative")
    norm_adv: bool = option(True, "PPO: normalise advantages per minibatch")
    target_kl: float | None = option(None, "PPO: stop the epochs early past this KL",
                                     check="positive")
    anneal_lr: bool = option(True, "PPO: anneal learning rates linearly to zero")
    local_update: str = option(
        "minibatch", "PPO: where a local learner's trunk takes its local steps: on every "
        "minibatch of every epoch (minibatch), on the whole rollout once per epoch (epoch) "
        "or once per rollout (rollout)", ("minibatch", "epoch", "rollout"))
    critic_learner: str | None = option(
        None, "PPO: how the critic's trunk is trained (default: as --learner); bp under a "
        "local actor is a labelled variant, no longer backpropagation-free")

    def resolve(self, config: Config, discrete: bool) -> None:
        """CleanRL's ``ppo.py`` on Discrete actions, ``ppo_continuous_action.py`` on Box."""
        if self.lr is None:
            self.lr = 2.5e-4 if discrete else 3e-4
        if self.ent_coef is None:
            self.ent_coef = 0.01 if discrete else 0.0
        if self.num_steps is None:
            self.num_steps = 128 if discrete else 2048
        if self.num_minibatches is None:
            self.num_minibatches = 4 if discrete else 32
        if self.update_epochs is None:
            self.update_epochs = 4 if discrete else 10
        envs = config.envs
        if envs.num_envs is None:
            envs.num_envs = 4 if discrete else 1
        if envs.norm_obs is None:
            envs.norm_obs = not discrete

    def validate(self, config: Config) -> None:
        if self.num_minibatches > self.num_steps * config.envs.num_envs:
            raise ConfigError("--num-minibatches exceeds the rollout size (num-steps × "
                              "num-envs)")
        critic = self.critic_learner
        if critic is not None and critic != config.learner:
            if critic not in learner_names():
                raise ConfigError(f"--critic-learner: {critic!r} is not one of "
                                  f"{', '.join(learner_names())}")
            if learner_sections(critic):
                raise ConfigError(f"--critic-learner {critic} has options of its own: give it "
                                  "as --learner instead")


@dataclass
class DQNConfig(AlgorithmConfig):
    section: ClassVar[str] = "dqn"
    search_space: ClassVar[dict[str, dict]] = {
        "lr": {"type": "float", "low": 3e-5, "high": 3e-3, "log": True},
        "hidden_lr": {"type": "float", "low": 1e-5, "high": 3e-3, "log": True},
        "train_frequency": {"type": "categorical", "choices": [1, 4, 10]},
        "target_network_frequency": {"type": "categorical", "choices": [250, 500, 1000]},
        "batch_size": {"type": "categorical", "choices": [64, 128, 256]},
        "exploration_fraction": {"type": "float", "low": 0.1, "high": 0.5},
    }
    lr: float | None = option(2.5e-4, "learning rate of the heads (RL loss)", check="positive")
    buffer_size: int = option(10_000, "DQN: replay buffer transitions per member",
                              check="positive")
    batch_size: int = option(128, "DQN: transitions per gradient step", check="positive")
    learning_starts: int = option(10_000, "DQN: steps before the first gradient step",
                                  check="non_negative")
    train_frequency: int = option(10, "DQN: steps per gradient step", check="positive")
    target_network_frequency: int = option(500, "DQN: steps between target network copies",
                                           check="positive")
    tau: float = option(1.0, "DQN: target network update rate (1: copy)", check="rate")
    start_e: float = option(1.0, "DQN: exploration rate at the start", check="unit")
    end_e: float = option(0.05, "DQN: exploration rate at the end of the schedule",
                          check="unit")
    exploration_fraction: float = option(0.5, "DQN: fraction of the run over which the "
                                         "exploration rate falls linearly", check="unit")
    double_dqn: bool = option(False, "DQN: choose the next action with the online network "
                              "(double DQN)")
    huber: bool = option(False, "DQN: Huber (smooth l1) TD loss instead of the squared error")

    def resolve(self, config: Config, discrete: bool) -> None:
        if not discrete:
            raise ConfigError(f"--algo dqn needs a Discrete action space; {config.env}'s "
                              "actions are continuous (use ppo or reinforce)")

    def validate(self, config: Config) -> None:
        if config.envs.num_envs != 1:
            raise ConfigError("DQN runs one environment per member; --num-envs must be 1")


ALGORITHM_SECTIONS: dict[str, type[AlgorithmConfig]] = {
    "reinforce": ReinforceConfig, "ppo": PPOConfig, "dqn": DQNConfig}
FIXED_SECTIONS: tuple[type[Section], ...] = (NetworkConfig, LocalConfig, EnvConfig, RunConfig)


def learner_sections(learner: str) -> tuple[type[Section], ...]:
    """The sections the learner ``learner`` declares (its spec's ``options``)."""
    from lpdm.learners.spec import get_spec

    return get_spec(learner).options


def learner_names() -> tuple[str, ...]:
    from lpdm.learners.spec import learner_names as names

    return names()


@dataclass
class Config:
    env: str = option("CartPole-v1", "Gymnasium environment id")
    algo: str = option("reinforce", "algorithm", ALGOS)
    learner: str = option("lpdm", "how the trunk is trained")
    seed: int = option(0, "random seed (lpdm train: a comma-separated list trains a "
                       "population, one run per seed)", check="non_negative")
    total_steps: int = option(100_000, "environment steps to train for", check="positive")
    gamma: float = option(0.99, "discount factor", check="unit")
    network: NetworkConfig = field(default_factory=NetworkConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    envs: EnvConfig = field(default_factory=EnvConfig)
    run: RunConfig = field(default_factory=RunConfig)
    # the algorithm's section (default: its defaults) and the learner's, by section name
    algorithm: AlgorithmConfig | None = None
    learner_options: dict[str, Section] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHM_SECTIONS:
            raise ConfigError(f"--algo: {self.algo!r} is not one of {', '.join(ALGOS)}")
        if self.learner not in learner_names():
            raise ConfigError(f"--learner: {self.learner!r} is not one of "
                              f"{', '.join(learner_names())}")
        wanted = ALGORITHM_SECTIONS[self.algo]
        if self.algorithm is None:
            self.algorithm = wanted()
        elif type(self.algorithm) is not wanted:
            raise ConfigError(f"a {self.algo} configuration holds a "
                              f"{self.algorithm.section} section")
        sections = {cls.section: cls for cls in learner_sections(self.learner)}
        unknown = set(self.learner_options) - set(sections)
        if unknown:
            raise ConfigError(f"--learner {self.learner} has no section {sorted(unknown)[0]!r}")
        for name, cls in sections.items():
            self.learner_options.setdefault(name, cls())

    def sections(self) -> dict[str, Section]:
        """Every section of this configuration, by name: the fixed ones, the algorithm's
        and the learner's."""
        fixed = {s.section: s for s in (self.network, self.local, self.envs, self.run)}
        return fixed | {self.algo: self.algorithm} | self.learner_options

    def _algorithm_as(self, kind: type) -> Any:
        if not isinstance(self.algorithm, kind):
            raise ConfigError(f"a {self.algo} configuration has no {kind.section} options")
        return self.algorithm

    @property
    def reinforce(self) -> ReinforceConfig:
        return self._algorithm_as(ReinforceConfig)

    @property
    def ppo(self) -> PPOConfig:
        return self._algorithm_as(PPOConfig)

    @property
    def dqn(self) -> DQNConfig:
        return self._algorithm_as(DQNConfig)

    @property
    def guidance_signal(self) -> str | None:
        """The performance signal the learner learns from (``--guidance-signal``, of whichever
        of its sections declares it; None: the learner takes none; algorithms then pass
        returns, which it ignores)."""
        signals = (getattr(s, "guidance_signal", None) for s in self.learner_options.values())
        return next((signal for signal in signals if signal is not None), None)


TOP_LEVEL = tuple(f.name for f in dataclasses.fields(Config)
                  if f.name not in ("network", "local", "envs", "run", "algorithm",
                                    "learner_options"))


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One field of one section, addressed by its path, e.g. ``("ppo", "clip_coef")``;
    top-level fields have a path of one name."""

    path: tuple[str, ...]
    type: type
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None
    check: str | None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def section(self) -> str:
        return self.path[0] if len(self.path) > 1 else ""

    def parse(self, text: str) -> Any:
        """One value from the command line, checked."""
        text = text.strip()
        if self.optional and text.lower() == "none":
            return None
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if self.type is tuple:
                return tuple(int(part) for part in text.split(",") if part.strip())
            value = self.type(text)
        except ValueError:
            raise ConfigError(f"{self.flag}: cannot read {text!r} as {self.type_name}") from None
        self.check_value(value)
        return value

    def check_value(self, value: Any) -> None:
        """Raise :class:`ConfigError` unless ``value`` is one this option takes."""
        if value is None:
            if not self.optional:
                raise ConfigError(f"{self.flag}: a value is needed")
            return
        choices = self.choices if self.name != "learner" else learner_names()
        if choices and value not in choices:
            raise ConfigError(f"{self.flag}: {value!r} is not one of {', '.join(choices)}")
        if self.type in (int, float) and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.flag} must be a finite number, got {value}")
        if self.check:
            passes, what = CHECKS[self.check]
            if not passes(value):
                raise ConfigError(f"{self.flag} {what}, got {_show(value)}")

    @property
    def flag(self) -> str:
        """Its command-line flag (see :func:`flags`)."""
        return flags()[self.flag_name].flag

    @property
    def flag_name(self) -> str:
        return _flag_names()[self.path]

    @property
    def type_name(self) -> str:
        return {tuple: "comma-separated integers"}.get(self.type, self.type.__name__)


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _leaf_type(annotation: Any) -> tuple[type, bool]:
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
    origin = typing.get_origin(annotation)
    return (origin if origin is not None else annotation), optional


def section_options(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[Option]:
    """The options of a section (or of the top level, ``Config`` without its sections)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        leaf, optional = _leaf_type(annotation)
        if not dataclasses.is_dataclass(leaf) and leaf is not dict and \
                not (isinstance(leaf, type) and issubclass(leaf, Section)):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield Option((*prefix, f.name), leaf, optional, default,
                         f.metadata.get("help", ""), f.metadata.get("choices"),
                         f.metadata.get("check"))


def all_sections() -> list[type[Section]]:
    """Every section any configuration can have: fixed, algorithms', learners'."""
    from lpdm.learners.spec import learner_specs

    sections: list[type[Section]] = [*FIXED_SECTIONS, *ALGORITHM_SECTIONS.values()]
    for spec in learner_specs().values():
        sections += [cls for cls in spec.options if cls not in sections]
    return sections


def iter_options() -> Iterator[Option]:
    """Every option of every section, the top level first."""
    yield from section_options(Config)
    for cls in all_sections():
        yield from section_options(cls, (cls.section,))


@dataclass(frozen=True)
class Flag:
    """A command-line flag: the options of one name in every section that has it."""

    name: str  # the key in sweep definitions and in :func:`with_values`
    flag: str
    options: tuple[Option, ...]

    @property
    def first(self) -> Option:
        return self.options[0]

    @property
    def type(self) -> type:
        return self.first.type

    @property
    def default(self) -> Any:
        """The default of its first section (of the top-level options: the default)."""
        return self.first.default

    @property
    def type_name(self) -> str:
        return self.first.type_name

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.first.choices if self.name != "learner" else learner_names()

    @property
    def sections(self) -> tuple[str, ...]:
        return tuple(o.section for o in self.options)

    @property
    def help(self) -> str:
        """Its help with the default, per section where defaults differ."""
        defaults = {o.section: o.default for o in self.options}
        if len({repr(d) for d in defaults.values()}) <= 1:
            text = f"(default: {_default_text(self.first.default)})"
        else:
            text = "(default: " + ", ".join(f"{s} {_default_text(d)}"
                                            for s, d in defaults.items()) + ")"
        owners = "" if len(self.options) == 1 or "" in self.sections else \
            f" [{', '.join(self.sections)}]"
        if self.name == "learner":
            from lpdm.learners.spec import learner_specs

            owners = ": " + "; ".join(f"{name}: {spec.summary}"
                                      for name, spec in learner_specs().items())
        return f"{self.first.help}{owners} {text}"

    @property
    def list_separator(self) -> str:
        """What separates a sweep's values of this option: ``/`` where a value has commas."""
        return "/" if self.type is tuple or self.name == "env_kwargs" else ","

    def parse(self, text: str) -> Any:
        if text.strip().lower() == "none":  # where one of its options takes None
            return next((o for o in self.options if o.optional), self.first).parse(text)
        return self.first.parse(text)

    def default_for(self, config: Config) -> Any:
        """Its default in ``config``'s sections (None where it does not act there)."""
        option = self.option_in(config)
        return None if option is None else option.default

    def option_in(self, config: Config) -> Option | None:
        """The option of this flag that acts in ``config`` (None: none does)."""
        present = config.sections()
        return next((o for o in self.options if o.section == "" or o.section in present), None)


def _default_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@functools.cache
def flags() -> dict[str, Flag]:
    """Every flag by name. Options of one name share a flag when their types agree; where
    two sections give one name different types, each is namespaced as ``SECTION_NAME``."""
    by_name: dict[str, list[Option]] = {}
    for opt in iter_options():
        by_name.setdefault(opt.name, []).append(opt)
    table: dict[str, Flag] = {}
    for name, options in by_name.items():
        kinds = {(o.type, o.choices) for o in options}
        groups = [(name, options)] if len(kinds) == 1 else \
            [(f"{o.section}_{name}", [o]) for o in options]
        for key, group in groups:
            table[key] = Flag(key, "--" + key.replace("_", "-"), tuple(group))
    return table


@functools.cache
def _flag_names() -> dict[tuple[str, ...], str]:
    return {o.path: f.name for f in flags().values() for o in f.options}


class _Options(typing.Mapping):
    """``OPTIONS[name]``: the flag of that name (the table is built on first use, once every
    learner, plugins included, has registered its sections)."""

    def __getitem__(self, name: str) -> Flag:
        return flags()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(flags())

    def __len__(self) -> int:
        return len(flags())


OPTIONS: typing.Mapping[str, Flag] = _Options()


def get_value(config: Config, option: Option) -> Any:
    """The value of ``option`` in ``config`` (which must have its section)."""
    if not option.section:
        return getattr(config, option.name)
    return getattr(config.sections()[option.section], option.name)


def active_options(config: Config) -> Iterator[Option]:
    """The options that act in ``config``: the top level's and its sections'."""
    yield from section_options(Config)
    for name, section in config.sections().items():
        yield from section_options(type(section), (name,))


def acts(name: str, algo: str, learner: str) -> bool:
    """Whether the option ``name`` acts on runs of ``algo`` with ``learner``."""
    sections = {"", *(s.section for s in FIXED_SECTIONS), algo,
                *(s.section for s in learner_sections(learner))}
    return any(o.section in sections for o in flags()[name].options)


def where_it_acts(name: str) -> str:
    """Where the option ``name`` acts, for a message: ``it acts with --algo ppo``."""
    from lpdm.learners.spec import learner_specs

    places = []
    for section in flags()[name].sections:
        if section in ALGORITHM_SECTIONS:
            places.append(f"--algo {section}")
        else:
            owners = [n for n, spec in learner_specs().items()
                      if any(cls.section == section for cls in spec.options)]
            places.append(f"--learner {', '.join(owners)}")
    return "it acts with " + " or ".join(places)


def with_values(config: Config, values: dict[str, Any]) -> Config:
    """A copy of ``config`` with options (by flag name, e.g. ``clip_coef``) replaced.

    The top-level options are set first (a new algorithm or learner brings its sections,
    at their defaults); every other value must act on the result.
    """
    data = to_dict(config)
    unknown = [name for name in values if name not in flags()]
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}")
    for name in TOP_LEVEL:
        if name in values:
            data[name] = values[name]
    if data["algo"] != config.algo:
        data.pop(config.algo, None)
    if data["learner"] != config.learner:
        for cls in learner_sections(config.learner):
            data.pop(cls.section, None)
    result = from_dict(data)
    present = result.sections()
    for name, value in values.items():
        if name in TOP_LEVEL:
            continue
        option = flags()[name].option_in(result)
        if option is None:
            raise ConfigError(f"{flags()[name].flag} does not act on --algo {result.algo} "
                              f"with --learner {result.learner} ({where_it_acts(name)})")
        setattr(present[option.section], option.name, value)
    return result


def read_config_file(path: str) -> dict[str, Any]:
    """The option values of a configuration file (``--config``): an object whose ``values``
    map option names to values, as ``lpdm tune`` writes its ``best.json``."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"--config {path}: {error}") from None
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected an object with \"values\": {{option: "
                          "value, ...}}")
    parsed = {}
    for name, value in values.items():
        if name not in flags():
            raise ConfigError(f"--config {path}: unknown option {name!r}")
        flag = flags()[name]
        value = tuple(value) if flag.type is tuple and isinstance(value, list) else value
        flag.first.check_value(value)
        parsed[name] = value
    return parsed


def to_dict(config: Config) -> dict[str, Any]:
    """The configuration as ``config.json`` holds it (this lpdm's :data:`FORMAT`)."""
    data: dict[str, Any] = {"format": FORMAT}
    data |= {name: getattr(config, name) for name in TOP_LEVEL}
    for name, section in config.sections().items():
        data[name] = dataclasses.asdict(section)
    return data


def _build_section(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown configuration key {cls.section}.{key}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items()})


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a configuration from :func:`to_dict` output (a run's ``config.json``, of
    this or an older format)."""
    data = migrate(data)
    top = {name: data[name] for name in TOP_LEVEL if name in data}
    algo, learner = top.get("algo", Config.algo), top.get("learner", Config.learner)
    if learner not in learner_names():
        raise ConfigError(f"--learner: {learner!r} is not one of {', '.join(learner_names())}"
                          " (a learner from a plugin? set LPDM_PLUGINS)")
    if algo not in ALGORITHM_SECTIONS:
        raise ConfigError(f"--algo: {algo!r} is not one of {', '.join(ALGOS)}")
    sections: dict[str, type] = {cls.section: cls for cls in FIXED_SECTIONS}
    sections[algo] = ALGORITHM_SECTIONS[algo]
    own = {cls.section: cls for cls in learner_sections(learner)}
    sections |= own
    for key in data:
        if key not in sections and key not in TOP_LEVEL and key != "format":
            raise ConfigError(f"unknown configuration key {key!r}")
    built = {name: _build_section(cls, data.get(name, {})) for name, cls in sections.items()}
    return Config(**top, network=built["network"], local=built["local"], envs=built["envs"],
                  run=built["run"], algorithm=built[algo],
                  learner_options={name: built[name] for name in own})


# --------------------------------------------------------------------------- migrations


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` contents of any format, as this format (:data:`FORMAT`) holds them."""
    version = data.get("format", 1)
    if version > FORMAT:
        raise ConfigError(f"configuration format {version} is newer than this lpdm's "
                          f"({FORMAT}); update lpdm")
    if version == 1:
        data = _from_format_1(data)
    return data


def _from_format_1(old: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (lpdm before the sections): ``network.lr``, a top-level ``ent_coef`` and
    ``max_grad_norm``, every algorithm's section, the guidance and diagnostics options in
    ``local``. Becomes the algorithm's section with its learning rate, entropy bonus and
    clipping; ``guidance`` for ``lpdm-guided``; ``run.diagnostics``."""
    data = {key: value for key, value in old.items()
            if key not in ("ent_coef", "max_grad_norm", *ALGORITHM_SECTIONS)}
    algo = old.get("algo", Config.algo)
    network = dict(old.get("network", {}))
    local = dict(old.get("local", {}))
    moved = {"lr": network.pop("lr", None), "max_grad_norm": old.get("max_grad_norm")}
    if algo != "dqn":
        moved["ent_coef"] = old.get("ent_coef")
    # an unresolved None keeps the section's own default
    data[algo] = {**old.get(algo, {}), **{k: v for k, v in moved.items() if v is not None}}
    guidance = {key: local.pop(key) for key in ("guidance_strength", "guidance_signal")
                if key in local}
    if old.get("learner") == "lpdm-guided":
        data["guidance"] = guidance
    run = dict(old.get("run", {}))
    if "diagnostics" in local:
        run["diagnostics"] = local.pop("diagnostics")
    data.update(network=network, local=local, run=run, format=2)
    return data


# --------------------------------------------------------------------------- resolution


def resolve(config: Config, discrete_actions: bool,
            obs_shape: tuple[int, ...] | None = None) -> Config:
    """Fill every ``None`` default for this algorithm, action space and observation shape
    (``None``: a flat vector), then validate."""
    c = from_dict(to_dict(config))
    image = obs_shape is not None and len(obs_shape) == 3
    if c.network.trunk is None:
        c.network.trunk = "conv" if image else "dense"
    if c.network.trunk == "conv" and not image:
        raise ConfigError(f"--trunk conv needs image observations; {c.env}'s are "
                          f"{'flat' if obs_shape is None else obs_shape}")
    if image and c.envs.image_layout == "auto":
        c.envs.image_layout = "chw" if obs_shape[0] < min(obs_shape[1:]) else "hwc"
    # the algorithm first: it decides defaults of the other sections (environments)
    for section in (c.algorithm, *c.learner_options.values(), c.network, c.local, c.envs, c.run):
        section.resolve(c, discrete_actions)
    validate(c)
    return c


def positive(flag: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{flag} must be positive, got {value}")


def check_target_options(local: LocalConfig) -> None:
    """The target's scaling options: a positive factor, or a mean under a fixed scaling."""
    positive("--target-scale", local.target_scale)
    if local.target_mean is None:
        return
    positive("--target-mean", local.target_mean)
    if local.target_scale != 1.0:
        raise ConfigError("--target-mean sets the target's size itself: leave "
                          "--target-scale at 1")
    if local.scale not in ("dim", "none"):
        raise ConfigError(f"--target-mean needs --scale dim or none (under {local.scale} the "
                          "output's distances are rescaled too)")


def validate(c: Config) -> None:
    """Raise :class:`ConfigError` on the first value that cannot work: every option's own
    check, then each section's checks across options."""
    for opt in active_options(c):
        opt.check_value(get_value(c, opt))
    for section in c.sections().values():
        section.validate(c)
