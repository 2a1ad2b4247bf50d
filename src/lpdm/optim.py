"""Optimisation over a population's stacked parameters ``[K, ...]``.

:class:`MemberAdam` is Adam (Kingma & Ba; torch's default, non-fused, formula) with one
step count per member: Adam is elementwise, so each member's slice is updated exactly as
an Adam of its own would update it, and a member left out of a step (``active``) keeps
its parameters and its moments untouched. :func:`clip_grad_norm_per_member` clips each
member's gradient by its own norm. Nothing here mixes members.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def _per_member(values: Tensor, like: Tensor) -> Tensor:
    """``values`` ``[K]`` shaped to broadcast against ``like`` ``[K, ...]``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class MemberAdam:
    """Adam over parameters of shape ``[K, ...]``, with per-member step counts and learning
    rates.

    ``param_groups``: dicts with ``params`` and ``lr`` (as torch's optimizers take them);
    each group's ``lr`` becomes a ``[K]`` tensor, one rate per member (members anneal on
    their own schedules), and ``base_lr`` keeps the rate given.
    """

    def __init__(self, param_groups: Iterable[dict], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param_groups = []
        for group in param_groups:
            params = list(group["params"])
            members = params[0].shape[0] if params else 0
            self.param_groups.append(dict(group, params=params, base_lr=float(group["lr"]),
                                          lr=torch.full((members,), float(group["lr"]),
                                                        dtype=torch.float64)))
        self.betas, self.eps = betas, eps
        self.state: dict[nn.Parameter, dict[str, Tensor]] = {
            p: {"step": torch.zeros(p.shape[0], dtype=torch.float64),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            for p in self.params}

    def set_lr_fraction(self, fraction: Tensor) -> None:
        """Every group's rate: ``base_lr`` times ``fraction`` (``[K]`` or a number)."""
        for group in self.param_groups:
            group["lr"] = (group["base_lr"] * torch.as_tensor(fraction, dtype=torch.float64)
                           ).expand(group["lr"].shape).clone()

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor | None = None) -> None:
        """One Adam step of every parameter with a gradient, for the members in ``active``
        (``[K]`` bool; all when None)."""
        beta1, beta2 = self.betas
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if state["exp_avg"].device != p.device:  # the module moved (e.g. .to("cuda"))
                    state["exp_avg"] = state["exp_avg"].to(p.device)
                    state["exp_avg_sq"] = state["exp_avg_sq"].to(p.device)
                if active is None or bool(active.all()):
                    self._update(p, p.grad, state, group["lr"], beta1, beta2)
                elif bool(active.any()):
                    index = active.nonzero().squeeze(1).to(p.device)
                    part = {key: value[index.to(value.device)] for key, value in state.items()}
                    values = p[index]
                    self._update(values, p.grad[index], part, group["lr"][index.cpu()], beta1,
                                 beta2)
                    p.index_copy_(0, index, values)
                    for key, value in part.items():
                        state[key].index_copy_(0, index.to(value.device), value)

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Tensor], lr: Tensor,
                beta1: float, beta2: float) -> None:
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = (lr / (1 - beta1 ** step)).to(p.dtype).to(p.device)
        correction2 = torch.sqrt(1 - beta2 ** step).to(p.dtype).to(p.device)
        denom = (exp_avg_sq.sqrt() / _per_member(correction2, p)).add_(self.eps)
        p.sub_(_per_member(step_size, p) * exp_avg / denom)

    def state_dict(self) -> dict:
        """Every tensor has the member dimension first."""
        return {"lrs": [group["lr"] for group in self.param_groups],
                "state": [self.state[p] for p in self.params]}

    def load_state_dict(self, saved: dict) -> None:
        for group, lr in zip(self.param_groups, saved["lrs"], strict=True):
            group["lr"] = lr.clone()
        self.state = {p: {k: v.clone().to(p.device) if k != "step" else v.clone()
                          for k, v in s.items()}
                      for p, s in zip(self.params, saved["state"], strict=True)}


@torch.no_grad()
def clip_grad_norm_per_member(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Scale each member's gradient so that its norm over all ``params`` is at most
    ``max_norm`` (as ``torch.nn.utils.clip_grad_norm_`` does for one network).

    Returns the norms before clipping, ``[K]``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).square().sum(1) for g in grads))
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(_per_member(coef, g))
    return norms
