"""``lpdm bench``: what locality costs, measured side by side in one process.

Four tables (docs/design.md §3, "bench"):

- ``kernel``: the pairwise l1 distance-matching loss ``||T - D(z)/d||_F``, forward and
  backward, by lpdm's kernel and by ``torch.cdist(p=1)``, with the largest differences
  of values and gradients between the two; on CPU also the kernel against its previous
  backward, which visited every ordered pair, and a layer's whole loss and gradient in
  one C call against that kernel with torch's elementwise loss (issue 24);
- ``update``: the update phase of one iteration of PPO and REINFORCE on Hopper-v4 at
  their defaults, for ``lpdm``, ``lpdm-guided`` and sparse ``lpdm`` against ``bp``;
- ``throughput``: end-to-end training steps per second of PPO (``bp``, ``lpdm``), of
  Stable-Baselines3's PPO with the same networks and settings, and of the environment
  alone (random actions), the ceiling;
- ``memory``: the peak memory of one update of a deep trunk, ``bp`` against ``lpdm``;
- ``population``: aggregate steps per second of a population of K members against K solo
  runs one after another (CartPole REINFORCE and PPO, Hopper PPO), beside SB3 PPO and the
  environments alone, and the resident memory of a population of 32 Hopper PPO members.

Candidates of one table are timed in turns (round robin), so that a busy machine slows
them alike; every number is a median over repeats. ``--quick`` shrinks every table to
seconds (for tests); its numbers are not meaningful.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lpdm import kernels
from lpdm.bench_command import MARKDOWN_BEGIN, MARKDOWN_END, TABLES
from lpdm.config import Config, ConfigError, LocalConfig, resolve, with_values

if TYPE_CHECKING:  # the environment modules (gymnasium) load only for the tables using them
    from lpdm.algorithms import Algorithm
    from lpdm.algorithms.reinforce import EpisodeBatch

BENCH_ENV = "Hopper-v4"
HIDDEN = (128, 256)
CPU = torch.device("cpu")


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A titled table of formatted cells, with notes printed under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        lines = [self.title, "=" * len(self.title)]
        lines.append("  ".join(c.rjust(w) for c, w in zip(self.columns, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True))
                  for r in self.rows]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---:" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def fmt_ms(seconds: float) -> str:
    return "n/a" if not math.isfinite(seconds) else f"{seconds * 1e3:.3g}" \
        if seconds * 1e3 < 100 else f"{seconds * 1e3:.0f}"


def fmt_ratio(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f}×"


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_in_turns(candidates: dict[str, Callable[[], object]], repeats: int,
                  device: torch.device = CPU, block_s: float = 0.02) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in turns.

    Each candidate is called once to warm up, then ``repeats`` rounds time every
    candidate over a block of calls lasting about ``block_s`` seconds.
    """
    calls = {}
    for name, fn in candidates.items():
        fn()
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        once = time.perf_counter() - start
        calls[name] = max(1, min(1000, int(block_s / max(once, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the body with ``count`` torch threads, restoring the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- (a) kernel


def _loss_step(distances: Callable[[Tensor], Tensor], z: Tensor, target: Tensor,
               backward: bool) -> Callable[[], Tensor]:
    """One evaluation of ``||target - distances(z) / d||`` (and its backward)."""
    width = z.shape[1]

    def step() -> Tensor:
        if not backward:
            with torch.no_grad():
                return torch.linalg.vector_norm(target - distances(z) / width)
        z.grad = None
        loss = torch.linalg.vector_norm(target - distances(z) / width)
        loss.backward()
        return loss

    return step


def relative_difference(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max |b|``: the largest difference relative to the scale of ``b``."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / scale if scale > 0 else (a - b).abs().max().item()


def kernel_candidates(device: torch.device) -> dict[str, Callable[[Tensor], Tensor]]:
    """The implementations compared on ``device``: torch.cdist against lpdm's."""
    if device.type == "cpu":
        return {"torch.cdist": kernels.pairwise_l1_cdist,
                "lpdm kernel": kernels.pairwise_l1_kernel}
    return {"torch.cdist": kernels.pairwise_l1_cdist,
            "lpdm chunked": kernels.pairwise_l1_chunked}


def kernel_table(device: torch.device, quick: bool) -> Table:
    """(a) The distance-matching loss, forward and forward + backward, per implementation."""
    sizes = [(64, 64), (256, 64)] if quick else [
        (n, d) for n in (64, 256, 1024, 2048) for d in (64, 256)]
    repeats = 3 if quick else 7
    candidates = kernel_candidates(device)
    base, ours = list(candidates)
    table = Table(
        f"(a) pairwise l1 distance-matching loss on {device.type}, ms per call",
        ["N", "d", f"{base} fwd", f"{ours} fwd", f"{base} fwd+bwd", f"{ours} fwd+bwd",
         "speed-up fwd+bwd", "max rel diff D", "max rel diff grad"])
    if device.type == "cpu" and not kernels.kernel_applies(torch.ones(64, 256)):
        table.notes.append(f"the C kernel is unavailable ({kernels.kernel_status()}); "
                           "rows are not measured")
        return table
    generator = torch.Generator().manual_seed(0)
    for n, d in sizes:
        z = torch.tanh(torch.randn(n, d, generator=generator)).to(device).requires_grad_()
        target = torch.rand(n, n, generator=generator).to(device)
        target = (target + target.T) / 2
        timings = time_in_turns(
            {f"{name} {part}": _loss_step(fn, z, target, part == "fwd+bwd")
             for name, fn in candidates.items() for part in ("fwd", "fwd+bwd")},
            repeats, device)
        values, grads = [], []
        for fn in candidates.values():
            z.grad = None
            loss = torch.linalg.vector_norm(target - fn(z) / d)
            loss.backward()
            values.append(fn(z).detach())
            grads.append(z.grad.detach().clone())
        table.rows.append([
            str(n), str(d),
            fmt_ms(timings[f"{base} fwd"]), fmt_ms(timings[f"{ours} fwd"]),
            fmt_ms(timings[f"{base} fwd+bwd"]), fmt_ms(timings[f"{ours} fwd+bwd"]),
            fmt_ratio(timings[f"{base} fwd+bwd"] / timings[f"{ours} fwd+bwd"]),
            f"{relative_difference(values[1], values[0]):.1e}",
            f"{relative_difference(grads[1], grads[0]):.1e}",
        ])
    threads = torch.get_num_threads() if device.type == "cpu" else None
    table.notes.append(
        f"loss ||T - D(z)/d||_F with z = tanh(randn), float32, medians of {repeats} rounds"
        + (f", {threads} torch thread(s) for both" if threads else ""))
    table.notes.append("max rel diff: max |ours - cdist| / max |cdist|, over all entries")
    if device.type == "cpu":
        kernel = kernels.load_kernel()
        build = "OpenMP" if kernel is not None and kernel.openmp else "single-threaded"
        table.notes.append(f"lpdm kernel: lpdm/pairwise_l1.c, {build} build for "
                           f"-march={kernels.kernel_march()}, called through a custom autograd "
                           "function (as pairwise_l1 does)")
        table.notes.append(vectorization_note())
    else:
        table.notes.append("lpdm chunked: cdist forward, l1 gradient in row blocks without "
                           "cdist's [N, N, d] buffer; training on CUDA keeps cdist's own "
                           "gradient, which is faster at the block sizes training uses")
    return table


def _available_kernel(table: Table) -> kernels.CompiledKernel | None:
    """The C kernel, or None with a note in ``table`` saying why it is unavailable."""
    kernel = kernels.load_kernel()
    if kernel is None or not kernels.kernel_applies(torch.ones(64, 256)):
        table.notes.append(f"the C kernel is unavailable ({kernels.kernel_status()})")
        return None
    return kernel


def _kernel_case(n: int, d: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Layer outputs ``z`` ``[n, d]`` (tanh range, requiring grad) and a symmetric target
    ``[n, n]``, for the kernel tables."""
    z = torch.tanh(torch.randn(n, d, generator=generator)).requires_grad_()
    target = torch.rand(n, n, generator=generator)
    return z, (target + target.T) / 2


def half_pairs_table(quick: bool) -> Table:
    """(a2) The kernel against the same build with its previous, full backward."""
    sizes = [(64, 256)] if quick else [(1024, 256)]
    repeats = 3 if quick else 9
    table = Table(
        "(a2) l1 kernel, backward over pairs i < j against the previous backward over all "
        "ordered pairs, cpu, ms per call",
        ["N", "d", "previous fwd+bwd", "now fwd+bwd", "speed-up fwd+bwd", "previous bwd",
         "now bwd", "speed-up bwd", "max rel diff grad"])
    kernel = _available_kernel(table)
    if kernel is None:
        return table
    generator = torch.Generator().manual_seed(0)
    for n, d in sizes:
        z, target = _kernel_case(n, d, generator)
        batch = z.detach()[None]
        threads = kernels._threads(batch.shape)  # as pairwise_l1 would choose
        upstream = torch.randn(1, n, n, generator=generator)
        timings = time_in_turns({
            "previous fwd+bwd": _loss_step(partial(kernels.pairwise_l1_kernel,
                                                   full_backward=True), z, target, True),
            "now fwd+bwd": _loss_step(kernels.pairwise_l1_kernel, z, target, True),
            "previous bwd": partial(kernel.backward, batch, upstream, threads, full=True),
            "now bwd": partial(kernel.backward, batch, upstream, threads),
        }, repeats)
        grads = [kernel.backward(batch, upstream, threads, full=full) for full in (True, False)]
        table.rows.append([
            str(n), str(d),
            *(fmt_ms(timings[f"{which} fwd+bwd"]) for which in ("previous", "now")),
            fmt_ratio(timings["previous fwd+bwd"] / timings["now fwd+bwd"]),
            *(fmt_ms(timings[f"{which} bwd"]) for which in ("previous", "now")),
            fmt_ratio(timings["previous bwd"] / timings["now bwd"]),
            f"{relative_difference(grads[1], grads[0]):.1e}"])
    build = "OpenMP" if kernel.openmp else "single-threaded"
    table.notes.append(
        f"one {build} build for -march={kernels.kernel_march()}, "
        f"{torch.get_num_threads()} torch thread(s); "
        "previous: its reference entry point lpdm_l1_backward_full; loss as in (a), "
        f"bwd: the kernel's backward alone, random upstream; medians of {repeats} rounds")
    table.notes.append("max rel diff grad: max |now - previous| / max |previous|; the forward "
                       "pass is the same")
    return table


def layer_loss_table(quick: bool) -> Table:
    """(a3) A layer's whole loss in one C call against today's kernel and torch's
    elementwise loss."""
    sizes = [(64, 256)] if quick else [(1024, 256)]
    repeats = 3 if quick else 31  # rounds are short; medians of 9 swung by ±0.15 when loaded
    table = Table(
        "(a3) whole layer loss ||T - D(z)/d||_F and dL/dz, one C call against the kernel + "
        "torch, cpu, ms per call",
        ["N", "d", "today: kernel (full bwd) + torch", "half-pairs kernel + torch", "fused C",
         "speed-up vs today", "speed-up vs half-pairs", "max rel diff loss",
         "max rel diff grad"])
    kernel = _available_kernel(table)
    if kernel is None:
        return table
    generator = torch.Generator().manual_seed(0)
    for n, d in sizes:
        z, target = _kernel_case(n, d, generator)
        fused = partial(kernels.l1_layer_loss, z.detach()[None], target[None], None, float(d))
        today = _loss_step(partial(kernels.pairwise_l1_kernel, full_backward=True), z, target,
                           True)
        timings = time_in_turns({
            "today": today,
            "half-pairs": _loss_step(kernels.pairwise_l1_kernel, z, target, True),
            "fused": fused,
        }, repeats)
        loss = today().detach()
        grad = z.grad.clone()
        fused_loss, fused_grad = fused()
        table.rows.append([
            str(n), str(d), *(fmt_ms(timings[name]) for name in ("today", "half-pairs", "fused")),
            fmt_ratio(timings["today"] / timings["fused"]),
            fmt_ratio(timings["half-pairs"] / timings["fused"]),
            f"{relative_difference(fused_loss[0], loss):.1e}",
            f"{relative_difference(fused_grad[0], grad):.1e}"])
    build = "OpenMP" if kernel.openmp else "single-threaded"
    table.notes.append(
        f"one {build} build for -march={kernels.kernel_march()}, "
        f"{torch.get_num_threads()} torch thread(s), medians of {repeats} rounds in turns; "
        "today: the kernel with its previous backward (lpdm_l1_backward_full) through "
        "autograd, as (a2); fused C: kernels.l1_layer_loss (lpdm_l1_layer_loss)")
    table.notes.append("max rel diff: fused C against today, max |diff| / max |today|")
    return table


def vectorization_note() -> str:
    """This CPU's ISA level and the compiler's verdict on the kernel's hot loops, one line."""
    march = kernels.kernel_march()
    verdicts = kernels.vectorization_report(march)
    head = f"CPU level {kernels.isa_level()}; hot loops at -march={march}: "
    if verdicts is None:
        return head + "no verdict (the compiler is not gcc, or it rejected the flags)"
    text = "; ".join(v.text() for v in verdicts)
    if not all(v.vectorized for v in verdicts):
        text += " -- a scalar hot loop makes the kernel several times slower"
    return head + text


# --------------------------------------------------------------------------- algorithms


def bench_config(algo: str, learner: str, quick: bool, **values: object) -> Config:
    """A resolved Hopper-v4 configuration at the algorithm's defaults (tiny when ``quick``)."""
    given: dict[str, object] = {"env": BENCH_ENV, "algo": algo, "learner": learner,
                                "total_steps": 10**6, "threads": 1, **values}
    if quick and algo == "ppo":
        given |= {"num_steps": 64, "num_minibatches": 2, "update_epochs": 1}
    return resolve(with_values(Config(), given), discrete_actions=False)


@dataclass
class Agent:
    """An algorithm (a population) over its own environments."""

    config: Config
    algo: Algorithm

    def close(self) -> None:
        self.algo.runner.close()


def make_agent(config: Config, members: int = 1) -> Agent:
    """A population of ``members`` (seeds 0, 1, ...) of ``config``, environments reset."""
    from lpdm.config import with_values
    from lpdm.runs import make_population

    configs = [with_values(config, {"seed": seed}) for seed in range(members)]
    algo, _ = make_population(configs)
    for seed in range(members):
        algo.runner.reset(seed, seed)
    return Agent(config, algo)


UPDATE_VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "bp": ("bp", {}),
    "lpdm": ("lpdm", {}),
    "lpdm-guided": ("lpdm-guided", {}),
    "lpdm sparse": ("lpdm", {"sparse": True}),
    "dfa": ("dfa", {}),
    "layerwise": ("layerwise", {}),
    "lpdm-metric": ("lpdm-metric", {}),
}


def reinforce_batch(steps: int, seed: int = 0) -> EpisodeBatch:
    """``steps`` transitions of random Hopper-v4 play, as one REINFORCE batch of a
    population of one (the argument of ``Reinforce.learn``); episodes end where Hopper
    falls, and the batch's last step ends the last one.
    """
    from lpdm.algorithms.base import discounted_returns
    from lpdm.algorithms.reinforce import EpisodeBatch
    from lpdm.envs import make_env

    env = make_env(BENCH_ENV)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, ends = [], [], [], []
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        ends.append(terminated or truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    ends[-1] = True
    observations = torch.as_tensor(np.asarray(observations, dtype=np.float32))[None]
    returns = discounted_returns(np.asarray(rewards), np.asarray(ends), 0.99)
    # the rows of the local targets are the observations themselves (no normalisation)
    actions_t = torch.as_tensor(np.asarray(actions, dtype=np.float32))[None]
    return EpisodeBatch(observations, observations, actions_t,
                        torch.as_tensor(returns, dtype=torch.float32)[None],
                        torch.ones(1, len(returns), dtype=torch.bool))


def update_table(quick: bool) -> Table:
    """(b) Seconds of the update phase per iteration, per learner, against ``bp``."""
    repeats = 2 if quick else 5
    table = Table("(b) update phase per iteration on Hopper-v4, seconds (1 torch thread)",
                  ["algorithm", "batch", "learner", "update s", "vs bp"])
    # PPO: whole iterations (collect 2048 steps, update), timed by the algorithm itself.
    try:
        agents = {name: make_agent(bench_config("ppo", learner, quick, **extra))
                  for name, (learner, extra) in UPDATE_VARIANTS.items()}
    except ValueError as error:
        table.notes.append(f"PPO rows skipped: {error}")
        agents = {}
    if agents:
        c = next(iter(agents.values())).config
        with torch_threads(1):
            seconds = _ppo_update_seconds(agents, repeats)
        batch = (f"{c.ppo.num_steps} steps, {c.ppo.update_epochs} epochs × "
                 f"{c.ppo.num_minibatches} minibatches")
        for name, value in seconds.items():
            table.rows.append(["PPO", batch, name, f"{value:.3f}",
                               fmt_ratio(value / seconds["bp"])])
        for agent in agents.values():
            agent.close()
    # REINFORCE: one update on the same fixed batch for every learner.
    steps = 64 if quick else 1000
    batch = reinforce_batch(steps)
    agents = {name: make_agent(bench_config("reinforce", learner, quick, **extra))
              for name, (learner, extra) in UPDATE_VARIANTS.items()}

    def reinforce_update(agent: Agent) -> Callable[[], None]:
        def update() -> None:
            with agent.algo.timed_update():
                agent.algo.learn(batch)  # the update phase of one iteration
        return update

    with torch_threads(1):
        seconds = time_in_turns({name: reinforce_update(a) for name, a in agents.items()},
                                repeats * 3, block_s=0.05)
    for name, value in seconds.items():
        table.rows.append(["REINFORCE", f"{steps} steps", name, f"{value:.3f}",
                           fmt_ratio(value / seconds["bp"])])
    for agent in agents.values():
        agent.close()
    table.notes.append("PPO: Algorithm.update_seconds of whole iterations at the Hopper "
                       "defaults (actor and critic trunks [128, 256] tanh), learners in turns, "
                       f"median of {repeats}")
    table.notes.append(f"REINFORCE: one update on the same {steps}-step batch of random "
                       "play for every learner (the default is one episode per update; a "
                       "full Hopper episode is 1000 steps)")
    table.notes.append("local learners: distance blocks of 128 rows, diagnostics on, "
                       "l1 kernel as dispatched by lpdm.kernels.pairwise_l1")
    return table


def _ppo_update_seconds(agents: dict[str, Agent], repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in agents}
    for round_index in range(repeats + 1):
        for name, agent in agents.items():
            agent.algo.iterate([0], [agent.config.ppo.num_steps * agent.config.envs.num_envs])
            if round_index > 0:  # the first round warms up
                samples[name].append(agent.algo.update_seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


# --------------------------------------------------------------------------- (c) throughput


def _sb3_model(config: Config) -> object:
    """Stable-Baselines3 PPO with the settings of ``config`` (raises ImportError if absent)."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    ppo = config.ppo
    envs = VecNormalize(make_vec_env(BENCH_ENV, n_envs=config.envs.num_envs, seed=config.seed),
                        norm_obs=True, norm_reward=True, clip_obs=10.0, clip_reward=10.0,
                        gamma=config.gamma)
    rollout = ppo.num_steps * config.envs.num_envs
    return SB3PPO(
        "MlpPolicy", envs, learning_rate=ppo.lr, n_steps=ppo.num_steps,
        batch_size=rollout // ppo.num_minibatches, n_epochs=ppo.update_epochs,
        gamma=config.gamma, gae_lambda=ppo.gae_lambda, clip_range=ppo.clip_coef,
        ent_coef=ppo.ent_coef, vf_coef=ppo.vf_coef, max_grad_norm=ppo.max_grad_norm,
        policy_kwargs={"net_arch": {"pi": list(HIDDEN), "vf": list(HIDDEN)},
                       "activation_fn": torch.nn.Tanh},
        device="cpu", seed=config.seed, verbose=0)


def throughput_table(quick: bool) -> Table:
    """(c) End-to-end training steps per second, PPO against SB3 PPO and the bare env."""
    from lpdm.envs import make_population_runner

    repeats = 1 if quick else 3
    table = Table("(c) end-to-end PPO training on Hopper-v4, environment steps per second "
                  "(1 torch thread)", ["trainer", "steps/s", "vs SB3 PPO", "vs env alone"])
    base = bench_config("ppo", "bp", quick)
    rollout = base.ppo.num_steps * base.envs.num_envs
    runs: dict[str, Callable[[], float]] = {}
    closers: list[Callable[[], None]] = []

    def environment_alone() -> Callable[[], float]:
        runner = make_population_runner([base], base.envs.num_envs)
        runner.reset(0, 0)
        space = runner.envs.single_action_space
        closers.append(runner.close)

        def run() -> float:
            start = time.perf_counter()
            for _ in range(base.ppo.num_steps):
                runner.step(np.stack([space.sample() for _ in range(runner.num_envs)])[None])
            return time.perf_counter() - start
        return run

    def lpdm_ppo(learner: str) -> Callable[[], float]:
        agent = make_agent(bench_config("ppo", learner, quick))
        closers.append(agent.close)

        def run() -> float:
            start = time.perf_counter()
            agent.algo.iterate([0], [rollout])
            return time.perf_counter() - start
        return run

    runs["environment alone (random actions)"] = environment_alone()
    try:
        runs["lpdm PPO, bp"] = lpdm_ppo("bp")
        runs["lpdm PPO, lpdm"] = lpdm_ppo("lpdm")
    except ValueError as error:
        table.notes.append(f"lpdm PPO rows skipped: {error}")
    try:
        model = _sb3_model(base)
        model.learn(total_timesteps=rollout)  # warm-up iteration

        def sb3() -> float:
            start = time.perf_counter()
            model.learn(total_timesteps=rollout, reset_num_timesteps=False)
            return time.perf_counter() - start
        runs["Stable-Baselines3 PPO"] = sb3
    except ImportError:
        table.notes.append("Stable-Baselines3 PPO skipped: stable-baselines3 is not "
                           "installed (pip install 'lpdm[sb3]')")
    with torch_threads(1):
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for name, run in runs.items():
            if name.startswith("lpdm PPO"):
                run()  # warm-up iteration
        for _ in range(repeats):
            for name, run in runs.items():
                samples[name].append(rollout / run())
    for close in closers:
        close()
    rates = {name: statistics.median(values) for name, values in samples.items()}
    sb3_rate = rates.get("Stable-Baselines3 PPO", float("nan"))
    env_rate = rates["environment alone (random actions)"]
    for name, rate in rates.items():
        table.rows.append([name, f"{rate:.0f}", fmt_ratio(rate / sb3_rate),
                           fmt_ratio(rate / env_rate)])
    c = base.ppo
    table.notes.append(
        f"every trainer: 1 environment with observation and reward normalisation, "
        f"{c.num_steps} steps per rollout, {c.num_minibatches} minibatches, "
        f"{c.update_epochs} epochs, separate [128, 256] tanh actor and critic; medians of "
        f"{repeats} whole iterations (collection + update), in turns")
    return table


# --------------------------------------------------------------------------- (d) memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def memory_case(learner: str, depth: int, batch: int, width: int) -> int:
    """Peak memory (bytes) that one update adds, measured in this (fresh) process.

    Builds a trunk of ``depth`` layers of ``width`` and a value head, runs a warm-up update
    on 2 rows (which allocates optimizer states and gradients), resets the kernel's record
    of the peak resident set size, and returns its growth over one update on ``batch``
    rows. Run with glibc's mmap threshold at 4 KiB (see :func:`memory_table`), every
    tensor is mapped when allocated and unmapped when freed, so resident memory follows
    live tensors.
    """
    from lpdm.learners import make_learner
    from lpdm.networks import ValueHead, seeded_generators
    from lpdm.optim import MemberAdam

    generators = seeded_generators([0])
    head = ValueHead(width, generators)
    learner_ = make_learner(learner, 11, (width,) * depth, LocalConfig(update_mode="streaming"),
                            3e-4, generators)
    optimizer = MemberAdam([{"params": [*head.parameters(), *learner_.rl_parameters()],
                             "lr": 3e-4}])
    torch.manual_seed(0)
    obs, returns = torch.randn(1, batch, 11), torch.randn(1, batch)

    def update(rows: int) -> None:
        features = learner_.features(obs[:, :rows], returns[:, :rows])
        loss = (head(features) - returns[:, :rows]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    update(2)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")  # reset the peak (VmHWM) to the current resident size
    before = _status_kib("VmRSS")
    update(batch)
    return (_status_kib("VmHWM") - before) * 1024


def _memory_in_subprocess(learner: str, depth: int, batch: int, width: int) -> int:
    code = ("import json; from lpdm.bench import memory_case; "
            f"print(json.dumps(memory_case({learner!r}, {depth}, {batch}, {width})))")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               GLIBC_TUNABLES="glibc.malloc.mmap_threshold=4096")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True, timeout=600)
    return int(json.loads(result.stdout.strip().splitlines()[-1]))


def memory_table(quick: bool) -> Table:
    """(d) Peak memory of one update against trunk depth, ``bp`` against ``lpdm``."""
    depths = (2, 4) if quick else (2, 4, 8, 16)
    batch, width = (512, 64) if quick else (4096, 256)
    table = Table(f"(d) peak memory of one update, batch {batch}, trunk of width {width}, MiB",
                  ["depth", "bp", "lpdm (streaming)", "lpdm / bp"])
    for depth in depths:
        bp = _memory_in_subprocess("bp", depth, batch, width)
        lpdm = _memory_in_subprocess("lpdm", depth, batch, width)
        table.rows.append([str(depth), f"{bp / 2**20:.1f}", f"{lpdm / 2**20:.1f}",
                           f"{lpdm / bp:.2f}" if bp > 0 else "n/a"])
    table.notes.append(
        "growth of the peak resident set size (VmHWM, reset before the update) of a fresh "
        "Linux process over one update (trunk + value head, squared-error loss, Adam), after "
        "a warm-up update on 2 rows that allocates optimizer states and gradients; glibc's "
        "mmap threshold at 4 KiB, so freed tensors leave resident memory at once")
    table.notes.append("lpdm: closed-form local update, distance blocks of 128 rows; "
                       "bp: autograd keeps every layer's activations for the backward pass")
    return table


# --------------------------------------------------------------------------- (e) population

POPULATION_CASES = (("CartPole-v1", "reinforce", "lpdm"), ("CartPole-v1", "ppo", "lpdm"),
                    ("Hopper-v4", "ppo", "lpdm"), ("Hopper-v4", "ppo", "bp"))


def population_config(env: str, algo: str, learner: str, quick: bool) -> Config:
    """A resolved configuration of one population benchmark case (tiny when ``quick``)."""
    from lpdm.envs import env_spaces

    given: dict[str, object] = {"env": env, "algo": algo, "learner": learner,
                                "total_steps": 10**7, "threads": 1}
    if quick and algo == "ppo":
        given |= {"num_steps": 64, "num_minibatches": 2, "update_epochs": 1}
    _, action_space = env_spaces(env)
    return resolve(with_values(Config(), given), discrete_actions=hasattr(action_space, "n"))


def _iterations_rate(agent: Agent, iterations: int) -> Callable[[], float]:
    """Aggregate valid steps per second of ``iterations`` iterations of a population."""
    members = agent.algo.members

    def run() -> float:
        start, steps = time.perf_counter(), 0
        for _ in range(iterations):
            done = agent.algo.iterate([0] * members, [10**7] * members)
            steps += sum(i.steps for i in done)
        return steps / (time.perf_counter() - start)
    return run


def _environments_rate(config: Config, members: int, steps: int) -> Callable[[], float]:
    """Steps per second of the members' environments alone, with random actions."""
    from lpdm.envs import make_population_runner

    runner = make_population_runner([config] * members, config.envs.num_envs)
    for seed in range(members):
        runner.reset(seed, seed)
    space = runner.envs.single_action_space

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            runner.step(np.stack([np.stack([space.sample() for _ in range(runner.num_envs)])
                                  for _ in range(members)]))
        return steps * members * runner.num_envs / (time.perf_counter() - start)
    return run


def population_table(quick: bool) -> Table:
    """(e) A population of K against K solo runs one after another (the solo rate)."""
    sizes = (1, 2) if quick else (1, 8, 16, 32)
    repeats = 1 if quick else 3
    table = Table("(e) populations: aggregate environment steps per second (1 torch thread)",
                  ["case", "K", "population", "K solo runs", "speed-up", "envs alone",
                   "of the ceiling"])
    for env, algo, learner in POPULATION_CASES:
        config = population_config(env, algo, learner, quick)
        iterations = (2 if quick else 20) if algo == "reinforce" else 1
        if not quick and algo == "ppo" and config.envs.num_envs > 1:
            iterations = 4  # CartPole: 4 x 128 steps per iteration
        agents = {k: make_agent(config, k) for k in sizes}
        env_steps = 64 if quick else 400
        runs = {f"population {k}": _iterations_rate(a, iterations) for k, a in agents.items()}
        runs |= {f"envs {k}": _environments_rate(config, k, env_steps) for k in sizes}
        for agent in agents.values():  # warm-up
            agent.algo.iterate([0] * agent.algo.members, [10**7] * agent.algo.members)
        with torch_threads(1):
            samples: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(repeats):
                for name, run in runs.items():
                    samples[name].append(run())
        rates = {name: statistics.median(v) for name, v in samples.items()}
        solo = rates["population 1"]
        for k in sizes:
            population, ceiling = rates[f"population {k}"], rates[f"envs {k}"]
            table.rows.append([f"{env} {algo} {learner}", str(k), f"{population:.0f}",
                               f"{solo:.0f}", fmt_ratio(population / solo), f"{ceiling:.0f}",
                               f"{population / ceiling:.0%}"])
        for agent in agents.values():
            agent.close()
    table.rows.append(uneven_population_row(quick))
    sb3 = _sb3_rate(quick, repeats)
    if sb3 is None:
        table.notes.append("SB3 PPO skipped: stable-baselines3 is not installed "
                           "(pip install 'lpdm[sb3]')")
    else:
        hopper = [r for r in table.rows if r[0] == "Hopper-v4 ppo lpdm"]
        best = max(hopper, key=lambda r: float(r[2]))
        table.notes.append(f"Stable-Baselines3 PPO on Hopper-v4, the same K seeds one after "
                           f"another: {sb3:.0f} steps/s; the Hopper lpdm population of "
                           f"{best[1]} is {float(best[2]) / sb3:.2f}x that")
    table.notes.append("K solo runs one after another run at the solo rate: its aggregate "
                       "steps/s is the K = 1 row; speed-up = population / solo; envs alone: "
                       "the same K members' environments (the population's stack, with "
                       "its normalisation) stepped with random actions, the ceiling")
    table.notes.append("uneven: whole runs through the trainer, wall seconds of the 8 "
                       "solo runs over the population's; members that end leave the "
                       "population (it compacts), so the slow member runs alone at solo "
                       "cost")
    table.notes.append(f"REINFORCE: {20 if not quick else 2} iterations (one episode per "
                       "member each; members that finish early wait); PPO: whole iterations; "
                       f"medians of {repeats}, in turns; resident memory of a population of "
                       f"32 Hopper-v4 PPO lpdm members: {_population_memory(quick)}")
    return table


UNEVEN_SEEDS = tuple(range(8))  # seed 2 collapses to ~9-step episodes: ~10x the iterations


def uneven_population_row(quick: bool) -> list[str]:
    """``lpdm train --env CartPole-v1 --algo reinforce --learner lpdm`` over seeds 0-7 as
    one population against the 8 solo runs one after another (whole runs, through the
    trainer): members whose episodes differ in length need very different numbers of
    iterations, so most of the population ends early."""
    from lpdm.runs import train_population

    steps = 2_000 if quick else 20_000
    configs = [with_values(Config(), {"env": "CartPole-v1", "algo": "reinforce",
                                      "learner": "lpdm", "total_steps": steps, "seed": seed,
                                      "threads": 1})
               for seed in UNEVEN_SEEDS]

    def wall_seconds(members: list[Config], out: Path) -> float:
        start = time.perf_counter()
        train_population(members, [out / f"s{c.seed}" for c in members], progress_bar=False)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        population = wall_seconds(configs, root / "population")
        solo = sum(wall_seconds([c], root / f"solo{c.seed}") for c in configs)
    total = steps * len(configs)
    return [f"CartPole-v1 reinforce lpdm, uneven: whole runs of {steps} steps, seeds 0-7",
            str(len(configs)), f"{total / population:.0f}", f"{total / solo:.0f}",
            fmt_ratio(solo / population), "—", "—"]


# what a population iteration spends its time on: (module file, function) per phase
PROFILE_PHASES = {
    "environments": (("envs.py", "step"),),
    "acting (forward, sampling)": (("base.py", "act"), ("ppo.py", "_policy_step")),
    "local update": (("local.py", "learn"),),
    "RL step": (("base.py", "rl_step"),),
}
PROFILE_CASES = (("CartPole-v1", "ppo", "lpdm"), ("CartPole-v1", "reinforce", "lpdm"),
                 ("Hopper-v4", "ppo", "lpdm"))


def iteration_profile(agent: Agent, iterations: int) -> dict[str, float]:
    """Shares of the time of ``iterations`` whole iterations spent in each phase of
    :data:`PROFILE_PHASES` (cumulative, so a phase called inside another counts in both)."""
    import cProfile
    import pstats

    members = agent.algo.members
    profiler = cProfile.Profile()
    start = time.perf_counter()
    with torch_threads(1):
        profiler.enable()
        for _ in range(iterations):
            agent.algo.iterate([0] * members, [10**7] * members)
        profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # (file, line, function) -> (.., .., .., cumulative, ..)

    def in_phase(file: str, function: str, where: tuple[tuple[str, str], ...]) -> bool:
        path = Path(file)
        return "lpdm" in path.parts and (path.name, function) in where

    return {phase: sum(entry[3] for (file, _, function), entry in stats.items()
                       if in_phase(file, function, where)) / total
            for phase, where in PROFILE_PHASES.items()}


def profile_table(quick: bool) -> Table:
    """(e2) Where a population's iteration spends its time, at K = 1 and K = 8."""
    sizes = (1, 2) if quick else (1, 8)
    table = Table("(e2) populations: shares of an iteration's time (cProfile, 1 torch thread)",
                  ["case", "K", *PROFILE_PHASES])
    for env, algo, learner in PROFILE_CASES:
        config = population_config(env, algo, learner, quick)
        iterations = (2 if quick else 20) if algo == "reinforce" else (1 if quick else 3)
        for k in sizes:
            agent = make_agent(config, k)
            agent.algo.iterate([0] * k, [10**7] * k)  # warm-up
            shares = iteration_profile(agent, iterations)
            agent.close()
            table.rows.append([f"{env} {algo} {learner}", str(k),
                               *(f"{shares[phase]:.0%}" for phase in PROFILE_PHASES)])
    table.notes.append("cumulative shares of whole iterations' wall time: a phase called "
                       "inside another counts in both (REINFORCE acts inside its "
                       "collection); the rest is Python between them (collection, "
                       "batching, GAE)")
    return table


def _sb3_rate(quick: bool, repeats: int) -> float | None:
    """Steps per second of Stable-Baselines3 PPO on Hopper-v4 at the same settings."""
    try:
        model = _sb3_model(bench_config("ppo", "bp", quick))
    except ImportError:
        return None
    rollout = model.n_steps * model.n_envs
    model.learn(total_timesteps=rollout)  # warm-up
    rates = []
    with torch_threads(1):
        for _ in range(repeats):
            start = time.perf_counter()
            model.learn(total_timesteps=rollout, reset_num_timesteps=False)
            rates.append(rollout / (time.perf_counter() - start))
    return statistics.median(rates)


def population_memory(members: int, quick: bool) -> int:
    """Peak resident memory (bytes) of this process after one iteration of a population of
    ``members`` Hopper-v4 PPO ``lpdm`` members (run in a fresh process)."""
    agent = make_agent(population_config("Hopper-v4", "ppo", "lpdm", quick), members)
    agent.algo.iterate([0] * members, [10**7] * members)
    return _status_kib("VmHWM") * 1024


def _population_memory(quick: bool) -> str:
    code = ("import json; from lpdm.bench import population_memory; "
            f"print(json.dumps(population_memory({2 if quick else 32}, {quick})))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True, timeout=900)
    peak = int(json.loads(result.stdout.strip().splitlines()[-1]))
    return f"{peak / 2**30:.2f} GiB" + (" (quick: 2 members)" if quick else "")


# --------------------------------------------------------------------------- command line


def machine_description() -> str:
    """CPU model, core count, torch version (and GPU when present)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    parts = [f"CPU {model} ({kernels.isa_level()})", f"{os.cpu_count()} cores",
             f"torch {torch.__version__}", f"Python {platform.python_version()}"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    return ", ".join(parts)


def run_bench(only: list[str], device: str, quick: bool, threads: int | None = None
              ) -> list[Table]:
    """The tables named in ``only`` (see :data:`TABLES`), in that order (``kernel`` on CPU:
    tables (a), (a2) and (a3)).

    ``threads``: torch threads of the kernel table (default: torch's current count).
    """
    if only != ["kernel"]:
        from lpdm.envs import quiet_gymnasium

        quiet_gymnasium()

    def kernel() -> list[Table]:
        with torch_threads(threads or torch.get_num_threads()):
            tables = [kernel_table(torch.device(device), quick)]
            if device == "cpu":
                tables += [half_pairs_table(quick), layer_loss_table(quick)]
            return tables

    builders: dict[str, Callable[[], list[Table]]] = {
        "kernel": kernel,
        "update": lambda: [update_table(quick)],
        "throughput": lambda: [throughput_table(quick)],
        "memory": lambda: [memory_table(quick)],
        "population": lambda: [population_table(quick), profile_table(quick)],
    }
    return [table for name in only for table in builders[name]()]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the tables asked for, print them, and write them as Markdown if asked."""
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := [name for name in only if name not in TABLES]:
        raise ConfigError(f"--only: unknown table {', '.join(unknown)}; "
                          f"choose from {', '.join(TABLES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    machine = machine_description()
    print(f"machine: {machine}\n", flush=True)
    tables = []
    for name in only:
        for table in run_bench([name], args.device, args.quick, args.threads):
            print(table.text() + "\n", flush=True)
            tables.append(table)
    if args.markdown:
        command = " ".join(["lpdm bench", *([f"--only {','.join(only)}"] if only != list(TABLES)
                                             else []),
                            *([f"--device {args.device}"] if args.device != "cpu" else []),
                            *([f"--threads {args.threads}"] if args.threads else []),
                            *(["--quick"] if args.quick else [])])
        body = "\n\n".join(t.markdown() for t in tables)
        write_markdown(Path(args.markdown), f"Measured by `{command}` on {machine}.\n\n{body}\n")
        print(f"wrote {args.markdown}")
    return 0




def write_markdown(path: Path, tables: str) -> None:
    """Write ``tables`` to ``path``; in a page with the bench markers, only between them."""
    page = path.read_text() if path.exists() else ""
    if MARKDOWN_BEGIN in page and MARKDOWN_END in page:
        before = page[:page.index(MARKDOWN_BEGIN) + len(MARKDOWN_BEGIN)]
        after = page[page.index(MARKDOWN_END):]
        path.write_text(f"{before}\n{tables}{after}")
    else:
        path.write_text(tables)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lpdm.bench``: the same as ``lpdm bench``, needing only torch and numpy
    for the kernel table (e.g. ``python -m lpdm.bench --only kernel --device cuda``)."""
    from lpdm.bench_command import add_bench_parser

    parser = argparse.ArgumentParser(prog="python -m lpdm.bench")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cmd_bench(args)
    except ConfigError as error:
        print(f"lpdm bench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
