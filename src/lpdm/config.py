"""Experiment configuration: one dataclass tree, the single definition of every option.

``lpdm train`` and ``lpdm sweep`` both build their flags from these fields (see
:func:`iter_options`), so an option is defined once. Fields left ``None`` take a default
that depends on the algorithm or the action space; :func:`resolve` fills them in and the
resolved configuration is what a run directory's ``config.json`` records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ALGOS = ("reinforce", "ppo", "dqn")
PAPER_ALGOS = ("reinforce", "ppo")  # the paper's comparison: a suite sweep's default
LEARNERS = ("bp", "lpdm", "lpdm-guided", "frozen", "linear")
LOCAL_LEARNERS = ("lpdm", "lpdm-guided")
# The paper's comparison: what a sweep runs when --learner is not given. ``linear`` (no
# hidden layer) is a control that studies ask for by name.
PAPER_LEARNERS = ("bp", "lpdm", "lpdm-guided", "frozen")
# Guidance strengths selected on held-out seeds (docs/method.md): PPO's advantages need a
# lighter touch than REINFORCE's returns.
GUIDANCE_STRENGTH = 0.3
PPO_GUIDANCE_STRENGTH = 0.1


class ConfigError(ValueError):
    """An option value that cannot be used; the message is one line for the user."""


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    metadata = {"help": help}
    if choices:
        metadata["choices"] = choices
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class NetworkConfig:
    hidden_sizes: tuple[int, ...] = _opt((128, 256), "hidden layer widths, comma separated")
    lr: float | None = _opt(
        None, "learning rate of the heads (RL loss); default 1e-3 REINFORCE, "
        "2.5e-4 PPO discrete, 3e-4 PPO continuous")
    hidden_lr: float | None = _opt(
        None, "learning rate of the trunk (RL loss under bp, local loss under lpdm); "
        "default: --lr")
    trunk: str | None = _opt(None, "trunk architecture: dense layers, or convolutions then "
                             "dense layers; default conv for image observations",
                             ("dense", "conv"))
    conv_channels: tuple[int, ...] = _opt((16,), "conv trunk: output channels per convolution")
    conv_kernels: tuple[int, ...] = _opt((3,), "conv trunk: kernel size per convolution (one "
                                        "value for all)")
    conv_strides: tuple[int, ...] = _opt((1,), "conv trunk: stride per convolution (one value "
                                        "for all)")
    init_trunk: str | None = _opt(
        None, "initialise the trunk(s) from the last checkpoint of this run directory (or, "
        "from a directory of members sSEED, the member with this run's seed); fresh runs only")


@dataclass
class LocalConfig:
    metric: str = _opt("l1", "distance metric of the local loss", ("l1", "l2", "cosine"))
    scale: str = _opt("dim", "distance scaling: per feature (dim), raw (none), by the "
                      "largest or mean distance (max, mean), or the paper's literal "
                      "D_X/out - D_Y/in (cross); which is best depends on the "
                      "environment (docs/method.md)", ("dim", "none", "max", "mean", "cross"))
    target_scale: float = _opt(1.0, "multiply the target distances by this factor (before "
                               "guidance)")
    target_mean: float | None = _opt(
        None, "rescale each block's target distances so that their mean over pairs is this "
        "value (before guidance): asks every layer for this mean distance per unit whatever "
        "the observations' scale (with --scale dim or none; does not beat dim across the "
        "suite, docs/method.md)")
    target_obs: str = _opt("input", "build the global target from the trunk's input (input) "
                           "or from the observation before normalisation (raw; the same "
                           "without --norm-obs)", ("input", "raw"))
    target: str = _opt("global", "match the distances of the network input (global) or of "
                       "the layer's own input (local)", ("global", "local"))
    sparse: bool = _opt(False, "match only nearest/furthest pairs (paper appendix A)")
    quantile_low: float = _opt(0.25, "sparse matching: row quantile of nearest pairs")
    quantile_high: float = _opt(0.75, "sparse matching: row quantile of furthest pairs")
    guidance_strength: float | None = _opt(
        None, "lpdm-guided: strength s of the reward guidance; default 0.3, PPO 0.1")
    guidance_signal: str | None = _opt(
        None, "lpdm-guided: performance per sample: returns (REINFORCE, PPO: returns-to-go; "
        "DQN: the Monte-Carlo return of the sample's episode), advantages (PPO) or td (DQN: "
        "the TD target); default returns, PPO advantages, DQN td",
        ("returns", "advantages", "td"))
    distance_batch: int = _opt(128, "samples per distance matrix (N)")
    update_mode: str = _opt("fused", "for metrics/scales trained by autograd: one backward "
                            "over all layers' local losses (fused) or layer by layer with "
                            "flat memory (streaming); the default l1 path computes its "
                            "gradients in closed form, flat in memory either way",
                            ("fused", "streaming"))
    conv_distance: str = _opt("flat", "distances between a convolution's outputs: of the "
                              "flattened feature maps (flat) or of their per-channel means "
                              "(pooled)", ("flat", "pooled"))
    diagnostics: bool = _opt(True, "log per-layer loss, distance correlation and saturation")


@dataclass
class EnvConfig:
    env_kwargs: str = _opt("", "keyword arguments of gymnasium.make, KEY=VALUE,... (values "
                           "read as Python literals; a sweep separates values by /)")
    image_layout: str = _opt("auto", "image observations: channels last (hwc) or first (chw); "
                             "auto: last unless the first axis is clearly the channels",
                             ("auto", "hwc", "chw"))
    num_envs: int | None = _opt(None, "parallel environments; default 1, PPO discrete 4")
    async_envs: bool = _opt(False, "step environments in subprocesses")
    norm_obs: bool | None = _opt(None, "normalise observations; default on for PPO on Box "
                                 "actions, off otherwise")
    norm_reward: bool | None = _opt(None, "scale rewards by a running return std; default "
                                    "as --norm-obs")


@dataclass
class ReinforceConfig:
    episodes_per_update: int = _opt(1, "REINFORCE: episodes per gradient step")
    normalize_advantage: bool = _opt(True, "REINFORCE: divide returns minus baseline by their std")


@dataclass
class PPOConfig:
    num_steps: int | None = _opt(None, "PPO: steps per environment per rollout; default 2048 "
                                 "continuous, 128 discrete")
    num_minibatches: int | None = _opt(None, "PPO: minibatches per epoch; default 32 "
                                       "continuous, 4 discrete")
    update_epochs: int | None = _opt(None, "PPO: epochs per rollout; default 10 continuous, "
                                     "4 discrete")
    gae_lambda: float = _opt(0.95, "PPO: GAE lambda")
    clip_coef: float = _opt(0.2, "PPO: surrogate clipping")
    clip_vloss: bool = _opt(True, "PPO: clip the value loss")
    vf_coef: float = _opt(0.5, "PPO: value loss coefficient")
    norm_adv: bool = _opt(True, "PPO: normalise advantages per minibatch")
    target_kl: float | None = _opt(None, "PPO: stop the epochs early past this KL")
    anneal_lr: bool = _opt(True, "PPO: anneal learning rates linearly to zero")


@dataclass
class DQNConfig:
    buffer_size: int = _opt(10_000, "DQN: replay buffer transitions per member")
    batch_size: int = _opt(128, "DQN: transitions per gradient step")
    learning_starts: int = _opt(10_000, "DQN: steps before the first gradient step")
    train_frequency: int = _opt(10, "DQN: steps per gradient step")
    target_network_frequency: int = _opt(500, "DQN: steps between target network copies")
    tau: float = _opt(1.0, "DQN: target network update rate (1: copy)")
    start_e: float = _opt(1.0, "DQN: exploration rate at the start")
    end_e: float = _opt(0.05, "DQN: exploration rate at the end of the schedule")
    exploration_fraction: float = _opt(0.5, "DQN: fraction of the run over which the "
                                       "exploration rate falls linearly")
    double_dqn: bool = _opt(False, "DQN: choose the next action with the online network "
                            "(double DQN)")
    huber: bool = _opt(False, "DQN: Huber (smooth l1) TD loss instead of the squared error")


@dataclass
class RunConfig:
    eval_every: int | None = _opt(None, "steps between deterministic evaluations; "
                                  "default total/20")
    eval_episodes: int = _opt(5, "episodes per evaluation")
    checkpoint_every: int | None = _opt(None, "steps between checkpoints; default total/10")
    threads: int = _opt(1, "torch threads")
    device: str = _opt("cpu", "torch device", ("cpu", "cuda"))
    tensorboard: bool = _opt(False, "also log to TensorBoard (needs the tensorboard extra)")


@dataclass
class Config:
    env: str = _opt("CartPole-v1", "Gymnasium environment id")
    algo: str = _opt("reinforce", "algorithm", ALGOS)
    learner: str = _opt("lpdm", "how the trunk is trained (linear: no hidden layer, the "
                        "heads read the observation)", LEARNERS)
    seed: int = _opt(0, "random seed (lpdm train: a comma-separated list trains a population, "
                          "one run per seed)")
    total_steps: int = _opt(100_000, "environment steps to train for")
    gamma: float = _opt(0.99, "discount factor")
    ent_coef: float | None = _opt(None, "entropy bonus; default 0, PPO discrete 0.01")
    max_grad_norm: float | None = _opt(None, "clip the RL gradient norm (0: off); default "
                                       "0.5 PPO, off REINFORCE")
    network: NetworkConfig = field(default_factory=NetworkConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    envs: EnvConfig = field(default_factory=EnvConfig)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    run: RunConfig = field(default_factory=RunConfig)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One leaf field of :class:`Config`, addressed by its path, e.g. ``("ppo", "clip_coef")``."""

    path: tuple[str, ...]
    type: type
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def list_separator(self) -> str:
        """What separates a sweep's values of this option: ``/`` where a value has commas."""
        return "/" if self.type is tuple or self.name == "env_kwargs" else ","

    def parse(self, text: str) -> Any:
        """Parse one value from the command line."""
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
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.flag}: {value!r} is not one of {', '.join(self.choices)}")
        return value

    @property
    def type_name(self) -> str:
        return {tuple: "comma-separated integers"}.get(self.type, self.type.__name__)


def _leaf_type(annotation: Any) -> tuple[type, bool]:
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
    origin = typing.get_origin(annotation)
    return (origin if origin is not None else annotation), optional


def iter_options(cls: type = Config, prefix: tuple[str, ...] = ()) -> Iterator[Option]:
    """Every leaf option of the configuration tree, in definition order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            yield from iter_options(annotation, (*prefix, f.name))
            continue
        leaf, optional = _leaf_type(annotation)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        yield Option((*prefix, f.name), leaf, optional, default, f.metadata.get("help", ""),
                     f.metadata.get("choices"))


OPTIONS: dict[str, Option] = {}
for _option in iter_options():
    if _option.name in OPTIONS:
        raise RuntimeError(f"option name {_option.name!r} is defined twice")
    OPTIONS[_option.name] = _option


def get_value(config: Config, option: Option) -> Any:
    node: Any = config
    for part in option.path:
        node = getattr(node, part)
    return node


def with_values(config: Config, values: dict[str, Any]) -> Config:
    """A copy of ``config`` with options (by name, e.g. ``clip_coef``) replaced."""
    data = to_dict(config)
    for name, value in values.items():
        if name not in OPTIONS:
            raise ConfigError(f"unknown option {name!r}")
        node = data
        *parents, leaf = OPTIONS[name].path
        for part in parents:
            node = node[part]
        node[leaf] = value
    return from_dict(data)


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], cls: type = Config) -> Any:
    """Rebuild a configuration from :func:`to_dict` output (e.g. a run's ``config.json``)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown configuration key {key!r}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = from_dict(value, annotation)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


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
    ppo = c.algo == "ppo"
    if c.algo == "dqn" and not discrete_actions:
        raise ConfigError(f"--algo dqn needs a Discrete action space; {c.env}'s actions are "
                          "continuous (use ppo or reinforce)")
    if c.network.lr is None:
        c.network.lr = (2.5e-4 if discrete_actions else 3e-4) if ppo else \
            2.5e-4 if c.algo == "dqn" else 1e-3
    if c.network.hidden_lr is None:
        c.network.hidden_lr = c.network.lr
    if c.ent_coef is None:
        c.ent_coef = 0.01 if (ppo and discrete_actions) else 0.0
    if c.max_grad_norm is None:
        c.max_grad_norm = 0.5 if ppo else 0.0
    if c.envs.num_envs is None:
        c.envs.num_envs = 4 if (ppo and discrete_actions) else 1
    if c.envs.norm_obs is None:
        c.envs.norm_obs = ppo and not discrete_actions
    if c.envs.norm_reward is None:
        c.envs.norm_reward = c.envs.norm_obs
    if c.ppo.num_steps is None:
        c.ppo.num_steps = 128 if discrete_actions else 2048
    if c.ppo.num_minibatches is None:
        c.ppo.num_minibatches = 4 if discrete_actions else 32
    if c.ppo.update_epochs is None:
        c.ppo.update_epochs = 4 if discrete_actions else 10
    if c.local.guidance_strength is None:
        c.local.guidance_strength = PPO_GUIDANCE_STRENGTH if ppo else GUIDANCE_STRENGTH
    if c.local.guidance_signal is None:
        c.local.guidance_signal = {"ppo": "advantages", "dqn": "td"}.get(c.algo, "returns")
    if c.run.eval_every is None:
        c.run.eval_every = max(c.total_steps // 20, 1)
    if c.run.checkpoint_every is None:
        c.run.checkpoint_every = max(c.total_steps // 10, 1)
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


def _validate_dqn(c: Config) -> None:
    d = c.dqn
    for flag, value in (("--buffer-size", d.buffer_size), ("--batch-size", d.batch_size),
                        ("--train-frequency", d.train_frequency),
                        ("--target-network-frequency", d.target_network_frequency)):
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value}")
    if d.learning_starts < 0:
        raise ConfigError(f"--learning-starts must not be negative, got {d.learning_starts}")
    if not 0.0 < d.tau <= 1.0:
        raise ConfigError(f"--tau must lie in (0, 1], got {d.tau}")
    for flag, value in (("--start-e", d.start_e), ("--end-e", d.end_e),
                        ("--exploration-fraction", d.exploration_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{flag} must lie in [0, 1], got {value}")
    if c.envs.num_envs != 1:
        raise ConfigError("DQN runs one environment per member; --num-envs must be 1")


def validate(c: Config) -> None:
    """Raise :class:`ConfigError` on the first value that cannot work."""
    for option in OPTIONS.values():
        value = get_value(c, option)
        if option.choices and value is not None and value not in option.choices:
            raise ConfigError(f"{option.flag}: {value!r} is not one of {', '.join(option.choices)}")

    def non_negative(flag: str, value: float | None) -> None:
        if value is not None and value < 0:
            raise ConfigError(f"{flag} must not be negative, got {value}")

    positive("--total-steps", c.total_steps)
    if not c.network.hidden_sizes or any(w <= 0 for w in c.network.hidden_sizes):
        raise ConfigError(f"--hidden-sizes needs positive widths, got {c.network.hidden_sizes}")
    n = c.network
    for flag, values in (("--conv-channels", n.conv_channels), ("--conv-kernels", n.conv_kernels),
                         ("--conv-strides", n.conv_strides)):
        if not values or any(v <= 0 for v in values):
            raise ConfigError(f"{flag} needs positive values, got {values}")
    for flag, values in (("--conv-kernels", n.conv_kernels), ("--conv-strides", n.conv_strides)):
        if len(values) not in (1, len(n.conv_channels)):
            raise ConfigError(f"{flag}: give one value or one per convolution "
                              f"({len(n.conv_channels)}), got {len(values)}")
    positive("--lr", c.network.lr)
    positive("--hidden-lr", c.network.hidden_lr)
    if not 0.0 <= c.gamma <= 1.0:
        raise ConfigError(f"--gamma must lie in [0, 1], got {c.gamma}")
    non_negative("--ent-coef", c.ent_coef)
    non_negative("--max-grad-norm", c.max_grad_norm)
    lo, hi = c.local.quantile_low, c.local.quantile_high
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(f"need 0 <= --quantile-low <= --quantile-high <= 1, got {lo}, {hi}")
    non_negative("--guidance-strength", c.local.guidance_strength)
    check_target_options(c.local)
    if c.local.distance_batch < 2:
        raise ConfigError(f"--distance-batch must be at least 2, got {c.local.distance_batch}")
    if c.local.guidance_signal == "advantages" and c.algo != "ppo":
        raise ConfigError("--guidance-signal advantages needs --algo ppo")
    if c.local.guidance_signal == "td" and c.algo != "dqn":
        raise ConfigError("--guidance-signal td needs --algo dqn")
    if c.algo == "dqn":
        _validate_dqn(c)
    positive("--num-envs", c.envs.num_envs)
    if c.algo == "reinforce" and c.envs.num_envs not in (None, 1):
        raise ConfigError("REINFORCE runs one environment; --num-envs must be 1")
    positive("--episodes-per-update", c.reinforce.episodes_per_update)
    positive("--num-steps", c.ppo.num_steps)
    positive("--num-minibatches", c.ppo.num_minibatches)
    positive("--update-epochs", c.ppo.update_epochs)
    if c.ppo.num_steps and c.envs.num_envs and c.ppo.num_minibatches and (
        c.ppo.num_minibatches > c.ppo.num_steps * c.envs.num_envs
    ):
        raise ConfigError("--num-minibatches exceeds the rollout size (num-steps × num-envs)")
    if not 0.0 <= c.ppo.gae_lambda <= 1.0:
        raise ConfigError(f"--gae-lambda must lie in [0, 1], got {c.ppo.gae_lambda}")
    positive("--clip-coef", c.ppo.clip_coef)
    non_negative("--vf-coef", c.ppo.vf_coef)
    positive("--target-kl", c.ppo.target_kl)
    positive("--eval-every", c.run.eval_every)
    non_negative("--eval-episodes", c.run.eval_episodes)
    positive("--checkpoint-every", c.run.checkpoint_every)
    positive("--threads", c.run.threads)
