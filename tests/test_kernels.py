"""The l1 kernel against torch.cdist, its build and fallbacks, and the closed-form update."""

import subprocess
import sys
import warnings

import pytest
import torch

from lpdm import distances, kernels, local
from lpdm.bench import torch_threads
from lpdm.config import LocalConfig
from lpdm.local import LocalTrunk
from lpdm.optim import MemberAdam

needs_kernel = pytest.mark.skipif(kernels.load_kernel() is None,
                                  reason=f"no C kernel: {kernels.kernel_status()}")


def reference(z: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and the gradient of ``sum(upstream * D)``, by cdist in float64."""
    leaf = z.detach().double().requires_grad_()
    distances = torch.cdist(leaf, leaf, p=1.0)
    distances.backward(upstream.double())
    return distances.detach(), leaf.grad


def assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Relative tolerance 1e-5, with an absolute floor of 1e-5 of the largest entry."""
    scale = max(expected.abs().max().item(), 1e-30)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5 * scale)


def kernel_distances_and_grad(z: torch.Tensor, upstream: torch.Tensor):
    leaf = z.detach().clone().requires_grad_()
    distances = kernels.pairwise_l1_kernel(leaf)
    distances.backward(upstream)
    return distances.detach(), leaf.grad


SHAPES = [(1, 1), (1, 7), (2, 1), (2, 3), (3, 5), (5, 1), (7, 31), (9, 32), (17, 33),
          (64, 256), (67, 129), (130, 11)]


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_kernel_values_and_gradients_match_cdist(n, d, threads, monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)  # threads > 1 even when small
    generator = torch.Generator().manual_seed(n * 1000 + d)
    z = torch.tanh(torch.randn(n, d, generator=generator))
    if n > 2:
        z[1] = z[0]  # identical rows: zero differences, whose sign is 0
        z[2, : d // 2] = 1.0  # saturated features, equal across rows
        z[0, : d // 2] = 1.0
    upstream = torch.randn(n, n, generator=generator)
    with torch_threads(threads):
        distances, grad = kernel_distances_and_grad(z, upstream)
    expected_distances, expected_grad = reference(z, upstream)
    assert_matches(distances, expected_distances)
    assert_matches(grad, expected_grad)
    assert torch.equal(distances, distances.T)
    assert torch.all(distances.diagonal() == 0)


@needs_kernel
def test_non_contiguous_input():
    base = torch.tanh(torch.randn(40, 90))
    for z in (base[:, ::3], base.T, base[::2]):
        assert not z.is_contiguous()
        upstream = torch.randn(z.shape[0], z.shape[0])
        distances, grad = kernel_distances_and_grad(z, upstream)
        expected_distances, expected_grad = reference(z, upstream)
        assert_matches(distances, expected_distances)
        assert_matches(grad, expected_grad)
        assert grad.shape == z.shape


@needs_kernel
def test_dispatch_uses_the_kernel_on_cpu_float32_and_cdist_otherwise(monkeypatch):
    calls = []
    original = kernels.pairwise_l1_kernel
    monkeypatch.setattr(kernels, "pairwise_l1_kernel",
                        lambda z: calls.append(z.dtype) or original(z))
    z32 = torch.randn(64, 64)
    z64 = z32.double().requires_grad_()
    kernels.pairwise_l1(z32)
    distances = kernels.pairwise_l1(z64)  # float64: torch.cdist, differentiable
    distances.sum().backward()
    kernels.pairwise_l1(torch.randn(4, 4))  # tiny: torch.cdist (no compile, no overhead)
    assert calls == [torch.float32]
    assert_matches(distances.detach(), reference(z64, torch.ones(64, 64))[0])


@needs_kernel
@pytest.mark.parametrize(("n", "d"), [(3, 2), (64, 256)])  # below and above KERNEL_MIN_WORK
def test_backward_by_hand_is_bit_for_bit_autograd(n, d):
    z = torch.tanh(torch.randn(n, d))
    upstream = torch.randn(n, n)
    leaf = z.clone().requires_grad_()
    kernels.pairwise_l1(leaf).backward(upstream)
    assert torch.equal(kernels.pairwise_l1_backward(z, upstream), leaf.grad)


def upstream_cases(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Gradients ``[N, N]`` of the distances as the local losses make them: any matrix
    (autograd), symmetric (dense or guided target), masked symmetric (sparse matching) and
    zero outside the real rows (padding)."""
    dense = torch.randn(n, n, generator=generator)
    symmetric = dense + dense.T
    pairs = torch.rand(n, n, generator=generator) < 0.3
    valid = torch.arange(n) < max(1, 2 * n // 3)
    return {"any": dense, "symmetric": symmetric,
            "sparse": symmetric * (pairs | pairs.T),
            "padded": symmetric * (valid[:, None] & valid[None, :])}


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_half_pairs_backward_matches_the_full_backward_and_cdist(n, d, threads):
    """Members ``[K, N, d]``; padded rows are zeros, as batches are padded."""
    generator = torch.Generator().manual_seed(n * 1000 + d + 7)
    z = torch.tanh(torch.randn(3, n, d, generator=generator))
    if n > 2:
        z[:, 1] = z[:, 0]
        z[:, 2, : d // 2] = 1.0
        z[:, 0, : d // 2] = 1.0
    padded = z.clone()
    padded[:, max(1, 2 * n // 3):] = 0.0
    kernel = kernels.load_kernel()
    for name, upstream in upstream_cases(n, generator).items():
        rows = padded if name == "padded" else z
        batch = upstream.expand(3, n, n).contiguous()
        grad = kernel.backward(rows, batch, threads)
        full = kernel.backward(rows, batch, threads, full=True)
        assert_matches(grad, full.double())
        for k in range(3):
            assert_matches(grad[k], reference(rows[k], upstream)[1])
        assert torch.equal(grad, kernel.backward(rows, batch, threads)), "not deterministic"


def layer_loss_case(case: str, k: int, n: int, d: int, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rows ``y`` ``[K, N, d]``, a target ``[K, N, N]`` and a mask as the local trunk makes
    them: dense, padded (pairs with a padded row masked out, those rows zero), guided (not
    bitwise symmetric) and sparse (per-row quantiles: not symmetric)."""
    y = torch.tanh(torch.randn(k, n, d, generator=generator))
    if n > 2:
        y[:, 1] = y[:, 0]
        y[:, 2, : d // 2] = 1.0
        y[:, 0, : d // 2] = 1.0
    target = distances.target_distances(torch.randn(k, n, 7, generator=generator), "l1", "dim",
                                        d)
    mask = None
    if case == "padded":
        valid = torch.ones(k, n, dtype=torch.bool)
        valid[0, max(1, 2 * n // 3):] = False
        y = y * valid[..., None]
        mask = distances.pair_mask(valid, n, y.device)
    elif case == "guided":
        target = distances.guided_target(target, torch.randn(k, n, generator=generator))
    elif case == "sparse":
        mask = distances.quantile_mask(target)
    return y, target, mask


def torch_layer_loss(y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                     divisor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses ``[K]`` and ``dL/dy`` by autograd through :func:`kernels.pairwise_l1` (the
    local trunk's torch path), in ``y``'s dtype (cdist in float64)."""
    leaf = y.detach().clone().requires_grad_()
    diff = target.to(y.dtype) - kernels.pairwise_l1(leaf) / divisor
    if mask is not None:
        diff = diff * mask
    losses = torch.linalg.vector_norm(diff, dim=(-2, -1))
    losses.sum().backward()
    return losses.detach(), leaf.grad


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", ["dense", "padded", "guided", "sparse"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize(("n", "d"), [(2, 3), (9, 32), (67, 129), (64, 256), (130, 11)])
def test_layer_loss_matches_the_torch_path_and_float64_autograd(n, d, k, case, threads,
                                                                 monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)
    generator = torch.Generator().manual_seed(n * 1000 + d + k)
    y, target, mask = layer_loss_case(case, k, n, d, generator)
    divisor = d / 3  # mostly not a power of 2: the kernel multiplies by an inexact 1/divisor
    with torch_threads(threads):
        losses, grad = kernels.l1_layer_loss(y, target, mask, divisor)
        torch_losses, torch_grad = torch_layer_loss(y, target, mask, divisor)
        exact_losses, exact_grad = torch_layer_loss(y.double(), target, mask, divisor)
        again = kernels.l1_layer_loss(y, target, mask, divisor)
    assert losses.shape == (k,) and grad.shape == y.shape
    for expected_losses, expected_grad in ((torch_losses.double(), torch_grad.double()),
                                           (exact_losses, exact_grad)):
        torch.testing.assert_close(losses.double(), expected_losses, rtol=1e-5, atol=0.0)
        for member in range(k):
            assert_matches(grad[member], expected_grad[member])
    assert torch.equal(again[0], losses) and torch.equal(again[1], grad), "not deterministic"


@needs_kernel
def test_layer_loss_of_a_member_with_nothing_to_match_is_zero_with_zero_gradient():
    y = torch.tanh(torch.randn(2, 40, 64))
    target = torch.rand(2, 40, 40)
    mask = torch.ones(2, 40, 40, dtype=torch.bool)
    mask[1] = False
    losses, grad = kernels.l1_layer_loss(y, target, mask, 64.0)
    assert losses[0] > 0 and losses[1] == 0
    assert grad[0].abs().max() > 0 and torch.all(grad[1] == 0)


@pytest.mark.parametrize("chunk", [1, 50, 1 << 24])
def test_chunked_gradient_matches_cdist(chunk, monkeypatch):
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", chunk)
    z = torch.tanh(torch.randn(13, 5, dtype=torch.float64))
    z[3] = z[4]
    upstream = torch.randn(13, 13, dtype=torch.float64)
    leaf = z.clone().requires_grad_()
    distances = kernels.pairwise_l1_chunked(leaf)
    distances.backward(upstream)
    expected_distances, expected_grad = reference(z, upstream)
    assert_matches(distances.detach(), expected_distances)
    assert_matches(leaf.grad, expected_grad)


# --------------------------------------------------------------------------- build


@pytest.fixture
def fresh_kernel(tmp_path, monkeypatch):
    """A kernel state with an empty cache directory; restored afterwards."""
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "cache"))
    kernels.reset_kernel()
    yield tmp_path / "cache"
    monkeypatch.undo()
    kernels.reset_kernel()


def test_without_a_compiler_everything_falls_back_to_cdist(fresh_kernel, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-lpdm")
    with pytest.warns(RuntimeWarning, match="torch.cdist"):
        assert kernels.load_kernel() is None
    assert "unavailable" in kernels.kernel_status()
    z = torch.randn(64, 64, requires_grad=True)
    upstream = torch.randn(64, 64)
    kernels.pairwise_l1(z).backward(upstream)
    expected_distances, expected_grad = reference(z, upstream)
    assert_matches(kernels.pairwise_l1(z).detach(), expected_distances)
    assert_matches(z.grad, expected_grad)
    assert_matches(kernels.pairwise_l1_backward(z, upstream), expected_grad)
    assert not kernels.kernel_applies(z)


def test_a_failing_compile_falls_back_to_cdist(fresh_kernel, monkeypatch, tmp_path):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'simulated compiler failure' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.warns(RuntimeWarning, match="simulated compiler failure"):
        assert kernels.load_kernel() is None
    assert not list(fresh_kernel.glob("*.so"))  # no half-written library left behind
    assert not list(fresh_kernel.glob(".build-*"))


def test_disabled_by_environment(fresh_kernel, monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.load_kernel() is None
    assert kernels.DISABLE_ENV in kernels.kernel_status()
    assert not fresh_kernel.exists()  # nothing compiled


@needs_kernel
def test_built_once_into_the_cache_and_reused(fresh_kernel, monkeypatch):
    kernel = kernels.load_kernel()
    assert kernel is not None and kernel.path.parent == fresh_kernel
    assert kernel.path.name.startswith("pairwise_l1-")
    kernels.reset_kernel()
    monkeypatch.setattr(kernels, "_compile", lambda *a: pytest.fail("compiled again"))
    assert kernels.load_kernel().path == kernel.path


@needs_kernel
def test_concurrent_first_builds_in_separate_processes(fresh_kernel):
    code = ("import torch; from lpdm import kernels; "
            "z = torch.randn(64, 64); "
            "assert kernels.load_kernel() is not None; "
            "print(float((kernels.pairwise_l1(z) - torch.cdist(z, z, p=1)).abs().max()))")
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert float(out) < 1e-3
    assert len(list(fresh_kernel.glob("pairwise_l1-*.so"))) == 1
    assert not list(fresh_kernel.glob(".build-*"))


# --------------------------------------------------------------------------- vectorisation

gcc_only = pytest.mark.skipif(kernels.vectorization_report("x86-64") is None,
                              reason="no gcc that compiles for x86-64 here")


def test_the_source_marks_its_hot_loops():
    assert set(kernels.hot_loops()) == {"forward tile", "forward narrow", "backward",
                                        "backward full"}


@gcc_only
@pytest.mark.parametrize("level", kernels.X86_LEVELS)
def test_every_hot_loop_vectorises_at_every_x86_level(level):
    """A scalar hot loop made the kernel 3x slower than cdist on AVX2 (issue 9)."""
    if not kernels.march_supported(level):
        pytest.skip(f"the compiler does not know -march={level}")
    verdicts = kernels.vectorization_report(level)
    assert verdicts is not None
    assert [v.text() for v in verdicts if not v.vectorized] == []


@gcc_only
def test_the_verdict_names_a_loop_left_scalar(tmp_path, monkeypatch):
    """The check itself can fail: a conditional in the backward loop is caught at v3."""
    source = kernels.SOURCE.read_text().replace(
        "return s * (float)((x > y) - (x < y));",
        "return (x > y ? s : 0.0f) - (x < y ? s : 0.0f);")
    patched = tmp_path / "pairwise_l1.c"
    patched.write_text(source)
    monkeypatch.setattr(kernels, "SOURCE", patched)
    verdicts = {v.name: v for v in kernels.vectorization_report("x86-64-v3")}
    assert not verdicts["backward"].vectorized
    assert "control flow" in verdicts["backward"].detail
    assert verdicts["forward tile"].vectorized


def test_isa_level_is_named():
    assert kernels.isa_level()


# --------------------------------------------------------------------------- local update


def twin_trunks(cfg: LocalConfig, guided: bool, members: int = 1):
    seeds = range(3, 3 + members)
    closed = LocalTrunk(11, (64, 128, 32), lr=1e-2, guided=guided, seeds=seeds, config=cfg)
    autograd = LocalTrunk(11, (64, 128, 32), lr=1e-2, guided=guided, seeds=seeds, config=cfg)
    assert closed.closed_form
    autograd.closed_form = False
    return closed, autograd


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("overrides", [
    {}, {"scale": "none"}, {"target": "local"}, {"update_mode": "streaming"},
    {"scale": "cross"}, {"scale": "cross", "target": "local"}, {"target_scale": 0.5},
    {"target_mean": 0.3},
])
def test_closed_form_update_is_bit_for_bit_backpropagation(overrides, guided):
    closed, autograd = twin_trunks(LocalConfig(**overrides), guided, members=2)
    torch.manual_seed(3)
    for n in (5, 64, 100):
        x, performance = torch.randn(2, n, 11), torch.randn(2, n)
        out_closed = closed.learn(x, performance, diagnostics=True)
        out_autograd = autograd.learn(x, performance, diagnostics=True)
        assert torch.equal(out_closed, out_autograd)
        assert closed.diagnostics == autograd.diagnostics
    for a, b in zip(closed.parameters(), autograd.parameters(), strict=True):
        assert torch.equal(a, b)


def test_closed_form_sparse_update_matches_backpropagation(monkeypatch):
    """The torch path's formulas (the fused layer loss has its own test, below)."""
    monkeypatch.setattr(local, "kernel_applies", lambda y: False)
    closed, autograd = twin_trunks(LocalConfig(sparse=True), False)
    x = torch.randn(64, 11)
    closed.learn(x)
    autograd.learn(x)
    for a, b in zip(closed.parameters(), autograd.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def trained_weights(case: str, blocks: tuple[int, ...]) -> list[torch.Tensor]:
    """A two-member LocalTrunk's weights after one local step per block of ``blocks`` rows:
    dense, guided, sparse, or padded (half of member 0's rows)."""
    trunk = LocalTrunk(11, (64, 128, 32), lr=1e-2, guided=case == "guided", seeds=(3, 4),
                       config=LocalConfig(sparse=case == "sparse"))
    torch.manual_seed(5)
    for n in blocks:
        valid = None
        if case == "padded":
            valid = torch.ones(2, n, dtype=torch.bool)
            valid[0, n // 2:] = False
        trunk.learn(torch.randn(2, n, 11), torch.randn(2, n), valid=valid)
    return [p.detach().clone() for p in trunk.parameters()]


@needs_kernel
@pytest.mark.parametrize("case", ["dense", "guided", "sparse", "padded"])
def test_closed_form_update_with_half_pairs_matches_the_full_backward(case, monkeypatch):
    """Weights after a few local steps: the half-pairs backward against the previous one."""
    monkeypatch.setattr(local, "kernel_applies", lambda y: False)  # no fused layer loss

    def run(full: bool) -> list[torch.Tensor]:
        backward = kernels.CompiledKernel.backward

        def forced(self, z, grad_distances, threads, _full=False):
            return backward(self, z, grad_distances, threads, full)

        monkeypatch.setattr(kernels.CompiledKernel, "backward", forced)
        return trained_weights(case, (64, 100, 128))

    for ours, reference_weights in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(ours, reference_weights, rtol=1e-4, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("case", ["dense", "guided", "sparse", "padded"])
def test_closed_form_update_with_the_fused_layer_loss_matches_the_torch_path(case, monkeypatch):
    """Weights after a few local steps: one C call per layer against the torch path."""
    calls = []

    def fused_layer_loss(*args):
        calls.append(args[0].shape)
        return kernels.l1_layer_loss(*args)

    monkeypatch.setattr(local, "l1_layer_loss", fused_layer_loss)

    def run(fused: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(local, "kernel_applies",
                            kernels.kernel_applies if fused else lambda y: False)
        return trained_weights(case, (64, 100, 128, 128, 128))

    reference_weights = run(False)
    assert not calls
    # float rounding, which Adam at lr 1e-2 amplifies where a gradient is near zero (and
    # which differs with the threads the kernel uses, by the summation order)
    for ours, expected in zip(run(True), reference_weights, strict=True):
        torch.testing.assert_close(ours, expected, rtol=1e-3, atol=2e-4)
    assert len(calls) == 5 * 3  # every layer of every step


def test_other_metrics_backpropagate():
    def trainer(**overrides):
        return LocalTrunk(3, (4,), **overrides)

    assert not trainer(metric="l2").closed_form
    assert not trainer(scale="max").closed_form
    assert trainer(scale="cross").closed_form


def test_member_adam_is_torch_adam_per_member():
    """Each member's slice follows torch.optim.Adam; a member left out keeps everything."""
    torch.manual_seed(4)
    stacked = torch.nn.Parameter(torch.randn(3, 5, 4))
    singles = [torch.nn.Parameter(stacked.detach()[k].clone()) for k in range(3)]
    ours = MemberAdam([{"params": [stacked], "lr": 1e-2}], eps=1e-5)
    theirs = [torch.optim.Adam([p], lr=1e-2, eps=1e-5) for p in singles]
    active_rounds = [None, torch.tensor([True, False, True]), None]
    for active in active_rounds:
        grads = torch.randn(3, 5, 4)
        stacked.grad = grads.clone()
        ours.step(active)
        for k, (p, optimizer) in enumerate(zip(singles, theirs, strict=True)):
            if active is None or active[k]:
                p.grad = grads[k].clone()
                optimizer.step()
    for k in range(3):
        torch.testing.assert_close(stacked.detach()[k], singles[k].detach(), rtol=1e-6,
                                   atol=1e-7)
    assert ours.state[stacked]["step"].tolist() == [3.0, 2.0, 3.0]
