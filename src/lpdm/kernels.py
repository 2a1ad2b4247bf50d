"""Pairwise l1 distances: the hot spot of every local update.

:func:`pairwise_l1` is what :mod:`lpdm.distances` calls for the ``l1`` metric. On CPU
float32 input it runs a small C kernel (``pairwise_l1.c``, next to this file) that
computes each unordered pair once, forward and backward, and never materialises the
``[N, N, d]`` differences; it is an order of magnitude faster than
``torch.cdist(p=1)`` (``lpdm bench --only kernel``; docs/performance.md). Everywhere
else (CUDA, float64, no C compiler, tiny inputs) it is ``torch.cdist``; the two agree
up to float rounding (relative differences about 1e-6). :func:`l1_layer_loss` computes a
whole layer's distance-matching loss and its gradient in one kernel call (the local
trunk's closed-form update).

The kernel is compiled once, on first use, with the system's C compiler into a cache
directory (``$LPDM_KERNEL_CACHE``, default ``~/.cache/lpdm/kernels``), in a file named by
the hash of the source, the compiler and the CPU, so concurrent processes (sweeps) and
machines sharing a home directory never load a stale or foreign build; it is written to a
temporary file and renamed into place atomically. It takes well under a second. Set
``LPDM_NO_KERNEL=1`` to always use ``torch.cdist``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("pairwise_l1.c")
CACHE_ENV = "LPDM_KERNEL_CACHE"
DISABLE_ENV = "LPDM_NO_KERNEL"
MARCH_ENV = "LPDM_KERNEL_MARCH"
BASE_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC")
LINK_FLAGS = ("-lm",)  # after the source: sqrt of the layer loss
COMPILE_TIMEOUT_S = 120
# Below KERNEL_MIN_WORK pairwise element operations (N² d) the fixed cost of a custom
# autograd function outweighs the kernel's speed and torch.cdist is used (this also means
# tiny inputs never trigger a compile). Below PARALLEL_MIN_WORK one thread is used: waking
# a second costs microseconds on an idle machine and milliseconds on a busy one.
# Both measured on a 2-core AMD EPYC (docs/performance.md).
KERNEL_MIN_WORK = 1 << 14
PARALLEL_MIN_WORK = 1 << 23
# Elements of [rows, N, d] sign blocks that the torch fallback gradient holds at once.
CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class CompiledKernel:
    """The loaded shared library and how it was built."""

    path: Path
    library: ctypes.CDLL
    openmp: bool

    def forward(self, z: Tensor, threads: int) -> Tensor:
        """Raw l1 distances ``[K, N, N]`` of a contiguous float32 CPU ``z`` ``[K, N, d]``."""
        m, n, d = z.shape
        out = torch.empty(m, n, n, dtype=z.dtype)
        size = self.library.lpdm_l1_forward_scratch(n, d)
        scratch = torch.empty(size, dtype=z.dtype) if size else None
        self.library.lpdm_l1_forward(z.data_ptr(), out.data_ptr(), m, n, d, threads,
                                     None if scratch is None else scratch.data_ptr())
        return out

    def backward(self, z: Tensor, grad_distances: Tensor, threads: int,
                 full: bool = False) -> Tensor:
        """Gradient ``[K, N, d]`` with respect to ``z`` of ``sum(grad_distances * D(z))``.

        ``grad_distances`` is ``[K, N, N]``. ``full``: by the previous backward, which visits
        every ordered pair (the reference of tests and ``lpdm bench``).
        """
        m, n, d = z.shape
        grad = torch.empty_like(z)
        scratch = torch.empty(int(self.library.lpdm_l1_backward_scratch(n, d, threads)),
                              dtype=z.dtype)
        entry = self.library.lpdm_l1_backward_full if full else self.library.lpdm_l1_backward
        entry(z.data_ptr(), grad_distances.data_ptr(), grad.data_ptr(), m, n, d, threads,
              scratch.data_ptr())
        return grad

    def layer_loss(self, y: Tensor, target: Tensor, mask: Tensor | None, divisor: float,
                   threads: int) -> tuple[Tensor, Tensor]:
        """Losses ``[K]`` ``L_k = ||mask ⊙ (T - D(y) / divisor)||_F`` and ``dL_k/dy_k``
        ``[K, N, d]`` (zero where ``L_k = 0``) of a contiguous float32 CPU ``y`` ``[K, N, d]``.

        ``target`` ``[K, N, N]`` contiguous float32; ``mask`` ``[K, N, N]`` contiguous bool
        or None (all pairs).
        """
        m, n, d = y.shape
        losses = torch.empty(m, dtype=y.dtype)
        grad = torch.empty_like(y)
        scratch = torch.empty(int(self.library.lpdm_l1_layer_loss_scratch(n, d, threads)),
                              dtype=y.dtype)
        self.library.lpdm_l1_layer_loss(y.data_ptr(), target.data_ptr(),
                                        None if mask is None else mask.data_ptr(), divisor,
                                        losses.data_ptr(), grad.data_ptr(), m, n, d, threads,
                                        scratch.data_ptr())
        return losses, grad


# --------------------------------------------------------------------------- building


def cache_dir() -> Path:
    """Where compiled kernels are kept (``$LPDM_KERNEL_CACHE`` or ``~/.cache/lpdm/kernels``)."""
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lpdm" / "kernels"


def kernel_march() -> str:
    """The ``-march`` the kernel is built for: ``$LPDM_KERNEL_MARCH`` or ``native``.

    E.g. ``LPDM_KERNEL_MARCH=x86-64-v3`` builds (and benchmarks) the AVX2 code on an
    AVX-512 machine.
    """
    return os.environ.get(MARCH_ENV, "").strip() or "native"


def flag_choices() -> tuple[tuple[str, ...], ...]:
    """Extra flags, tried in order; the first that compiles is used (a compiler without
    OpenMP or without the ``-march`` still gives a working, if slower, kernel)."""
    march = f"-march={kernel_march()}"
    return ((march, "-fopenmp"), ("-fopenmp",), (march,), ())


def find_compiler() -> str | None:
    """The C compiler to use: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    if configured := os.environ.get("CC"):
        return shutil.which(configured)
    for name in ("cc", "gcc", "clang"):
        if found := shutil.which(name):
            return found
    return None


def _cpu_signature() -> str:
    """Identifies the instruction set that ``-march=native`` compiles for."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("model name", "flags",
                                                                   "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _build_key(compiler: str) -> str:
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler.encode(), version.encode(),
                 _cpu_signature().encode(), platform.machine().encode(),
                 repr((BASE_FLAGS, flag_choices(), LINK_FLAGS)).encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _compile(compiler: str, target: Path) -> None:
    """Compile :data:`SOURCE` into ``target``, atomically; raise ``RuntimeError`` if impossible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for extra in flag_choices():
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=".so")
        os.close(fd)
        tmp = Path(tmp_name)
        command = [compiler, *BASE_FLAGS, *extra, str(SOURCE), *LINK_FLAGS, "-o", str(tmp)]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=COMPILE_TIMEOUT_S)
            if result.returncode == 0:
                os.replace(tmp, target)  # atomic: concurrent builders each rename a whole file
                return
            errors.append(f"{' '.join(extra) or 'plain'}: {result.stderr.strip()[-300:]}")
        except (OSError, subprocess.SubprocessError) as error:
            errors.append(f"{' '.join(extra) or 'plain'}: {error}")
        finally:
            tmp.unlink(missing_ok=True)
    raise RuntimeError("compiling the l1 kernel failed; " + " | ".join(errors))


def _load(path: Path) -> CompiledKernel:
    library = ctypes.CDLL(str(path))
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.lpdm_l1_forward.argtypes = [pointer, pointer, size, size, size, ctypes.c_int,
                                        pointer]
    library.lpdm_l1_forward.restype = None
    for backward in (library.lpdm_l1_backward, library.lpdm_l1_backward_full):
        backward.argtypes = [pointer, pointer, pointer, size, size, size, ctypes.c_int,
                             pointer]
        backward.restype = None
    library.lpdm_l1_forward_scratch.argtypes = [size, size]
    library.lpdm_l1_forward_scratch.restype = size
    library.lpdm_l1_backward_scratch.argtypes = [size, size, ctypes.c_int]
    library.lpdm_l1_backward_scratch.restype = size
    library.lpdm_l1_layer_loss.argtypes = [pointer, pointer, pointer, ctypes.c_float, pointer,
                                           pointer, size, size, size, ctypes.c_int, pointer]
    library.lpdm_l1_layer_loss.restype = None
    library.lpdm_l1_layer_loss_scratch.argtypes = [size, size, ctypes.c_int]
    library.lpdm_l1_layer_loss_scratch.restype = size
    library.lpdm_l1_openmp.restype = ctypes.c_int
    return CompiledKernel(path, library, bool(library.lpdm_l1_openmp()))


def build_kernel() -> CompiledKernel:
    """Compile (unless cached) and load the kernel; ``RuntimeError`` when impossible."""
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    target = cache_dir() / f"pairwise_l1-{_build_key(compiler)}.so"
    if not target.exists():
        try:
            _compile(compiler, target)
        except OSError as error:
            raise RuntimeError(f"cannot write the kernel to {target.parent}: {error}") from None
    try:
        return _load(target)
    except (OSError, AttributeError) as error:
        raise RuntimeError(f"cannot load the compiled kernel {target}: {error}") from None


# --------------------------------------------------------------------------- vectorisation

# A hot loop is marked in the source by a comment line "/* hot loop: NAME */" just before
# its "#pragma omp simd"; the compiler reports the loop at a line of the next few.
HOT_LOOP_PATTERN = re.compile(r"^\s*/\* hot loop: ([a-z ]+) \*/\s*$")
HOT_LOOP_SPAN = 4
X86_LEVELS = ("x86-64-v2", "x86-64-v3", "x86-64-v4")
# /proc/cpuinfo flags each x86-64 micro-architecture level needs (beyond the level below).
_LEVEL_FLAGS = {
    "x86-64-v2": {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"},
    "x86-64-v3": {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
    "x86-64-v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
}


@dataclass(frozen=True)
class LoopVerdict:
    """The compiler's verdict on one hot loop of the kernel."""

    name: str
    line: int  # of the marker comment in pairwise_l1.c
    vectorized: bool
    detail: str  # "32-byte vectors", or why not

    def text(self) -> str:
        return f"{self.name}: {'vectorised, ' if self.vectorized else 'NOT vectorised: '}" \
            f"{self.detail}"


def hot_loops(source: Path | None = None) -> dict[str, int]:
    """The marked hot loops of ``source``: name -> line of the marker (1-based)."""
    loops = {}
    for number, line in enumerate((source or SOURCE).read_text().splitlines(), start=1):
        if match := HOT_LOOP_PATTERN.match(line):
            loops[match.group(1)] = number
    return loops


def isa_level() -> str:
    """This CPU's x86-64 micro-architecture level (``x86-64-v1`` … ``-v4``), else its arch."""
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return machine
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return "x86-64 (level unknown)"
    level = "x86-64-v1"
    for name in X86_LEVELS:
        if not _LEVEL_FLAGS[name] <= flags:
            break
        level = name
    return level


def _is_gcc(compiler: str) -> bool:
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "clang" not in version.lower() and ("gcc" in version.lower()
                                               or "free software foundation" in version.lower())


def march_supported(march: str, compiler: str | None = None) -> bool:
    """Whether the C compiler accepts ``-march=march``."""
    compiler = compiler or find_compiler()
    if compiler is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("int lpdm_probe(void) { return 0; }\n")
        result = subprocess.run([compiler, f"-march={march}", "-c", str(probe), "-o",
                                 str(Path(tmp) / "probe.o")], capture_output=True,
                                timeout=COMPILE_TIMEOUT_S)
    return result.returncode == 0


def vectorization_report(march: str = "native", compiler: str | None = None
                         ) -> list[LoopVerdict] | None:
    """Compile the kernel for ``-march=march`` and read gcc's verdict on each hot loop.

    None when the compiler cannot tell (not gcc, no compiler, or it rejects the flags).
    """
    compiler = compiler or find_compiler()
    if compiler is None or not _is_gcc(compiler):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        command = [compiler, *BASE_FLAGS, f"-march={march}", "-fopenmp", "-fopt-info-vec-all",
                   str(SOURCE), *LINK_FLAGS, "-o", str(Path(tmp) / "kernel.so")]
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=COMPILE_TIMEOUT_S)
    if result.returncode != 0:
        return None
    messages: list[tuple[int, str]] = []
    pattern = re.compile(re.escape(SOURCE.name) + r":(\d+):\d+: (.*)")
    for line in result.stderr.splitlines():
        if match := pattern.search(line):
            messages.append((int(match.group(1)), match.group(2)))
    verdicts = []
    for name, marker in hot_loops().items():
        near = [text for number, text in messages if marker < number <= marker + HOT_LOOP_SPAN]
        widths = sorted({int(m.group(1)) for text in near
                         if (m := re.search(r"loop vectorized using (\d+) byte vectors", text))})
        if widths:
            verdicts.append(LoopVerdict(name, marker, True, f"{widths[-1]}-byte vectors"))
            continue
        reasons = [text.split("not vectorized:", 1)[1].strip() for text in near
                   if "not vectorized:" in text]
        verdicts.append(LoopVerdict(name, marker, False,
                                    reasons[0] if reasons else "no vectorised loop reported"))
    return verdicts


class _KernelState:
    """The process-wide kernel: built at most once, on first use, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kernel: CompiledKernel | None = None
        self.error: str | None = None
        self.tried = False
        self.disabled = False  # $LPDM_NO_KERNEL, as read on first use
        self.parallel_used = False  # an OpenMP thread pool exists in this process
        self.forked = False  # this process is a fork of one that had used that pool

    def get(self) -> CompiledKernel | None:
        if not self.tried:
            with self.lock:
                if not self.tried:
                    self.disabled = kernel_disabled()
                    if not self.disabled:
                        self._build()
                    self.tried = True
        return self.kernel

    def _build(self) -> None:
        try:
            self.kernel = build_kernel()
        except RuntimeError as error:
            self.error = str(error)
            warnings.warn(f"lpdm: using torch.cdist for l1 distances: {error}",
                          RuntimeWarning, stacklevel=4)

    def reset(self) -> None:
        """Forget the loaded kernel (tests: rebuild under other settings)."""
        with self.lock:
            self.kernel, self.error, self.tried, self.disabled = None, None, False, False

    def after_fork_in_child(self) -> None:
        # GNU OpenMP's thread pool does not survive fork(); a child of a process that used
        # it runs the kernel single-threaded rather than risk a hang.
        self.forked = self.forked or self.parallel_used


_STATE = _KernelState()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_STATE.after_fork_in_child)


def kernel_disabled() -> bool:
    """Whether ``$LPDM_NO_KERNEL`` asks for torch.cdist everywhere."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def load_kernel() -> CompiledKernel | None:
    """The compiled kernel, building it on first call; None when disabled or impossible.

    ``$LPDM_NO_KERNEL`` is read on the first call (and after :func:`reset_kernel`).
    """
    return _STATE.get()


def kernel_status() -> str:
    """One line: which implementation :func:`pairwise_l1` uses on CPU float32, and why."""
    kernel = load_kernel()
    if _STATE.disabled:
        return f"torch.cdist ({DISABLE_ENV} is set)"
    if kernel is None:
        return f"torch.cdist (C kernel unavailable: {_STATE.error})"
    return f"C kernel {kernel.path} ({'OpenMP' if kernel.openmp else 'single-threaded build'})"


def reset_kernel() -> None:
    """Forget the loaded kernel so that the next call builds (or fails) anew."""
    _STATE.reset()


# --------------------------------------------------------------------------- autograd


def _threads(shape: torch.Size) -> int:
    n, d = shape[-2], shape[-1]
    if _STATE.forked or n * n * d < PARALLEL_MIN_WORK:
        return 1
    threads = max(torch.get_num_threads(), 1)
    if threads > 1:
        _STATE.parallel_used = True
    return threads


def _as_batch(z: Tensor) -> Tensor:
    """``z`` as a contiguous ``[K, N, d]`` (a lone ``[N, d]`` matrix is ``K = 1``)."""
    return (z if z.dim() == 3 else z.unsqueeze(0)).contiguous()


class _PairwiseL1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, kernel: CompiledKernel, full: bool) -> Tensor:
        ctx.kernel, ctx.full = kernel, full
        ctx.save_for_backward(z)
        out = kernel.forward(_as_batch(z), _threads(z.shape))
        return out if z.dim() == 3 else out.squeeze(0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_distances: Tensor) -> tuple[Tensor, None, None]:
        (z,) = ctx.saved_tensors
        grad = ctx.kernel.backward(_as_batch(z), _as_batch(grad_distances), _threads(z.shape),
                                   ctx.full)
        return (grad if z.dim() == 3 else grad.squeeze(0)), None, None


def kernel_applies(z: Tensor) -> bool:
    """Whether :func:`pairwise_l1` would run the C kernel on ``z`` (builds it if needed)."""
    return (z.device.type == "cpu" and z.dtype == torch.float32 and z.dim() in (2, 3)
            and z.numel() * z.shape[-2] >= KERNEL_MIN_WORK
            and load_kernel() is not None)


def pairwise_l1_kernel(z: Tensor, full_backward: bool = False) -> Tensor:
    """Raw l1 distances ``[..., N, N]`` of a CPU float32 ``z`` ``[..., N, d]`` by the C kernel.

    ``full_backward``: differentiate with the previous backward, which visits every ordered
    pair (the reference of tests and ``lpdm bench``).
    """
    kernel = load_kernel()
    if kernel is None:
        raise RuntimeError(f"the l1 kernel is unavailable: {kernel_status()}")
    if z.device.type != "cpu" or z.dtype != torch.float32 or z.dim() not in (2, 3):
        raise ValueError("the l1 kernel takes a [N, d] or [K, N, d] float32 CPU tensor")
    z = z.contiguous()
    if torch.is_grad_enabled() and z.requires_grad:
        return _PairwiseL1.apply(z, kernel, full_backward)
    out = kernel.forward(_as_batch(z), _threads(z.shape))
    return out if z.dim() == 3 else out.squeeze(0)


def pairwise_l1_cdist(z: Tensor) -> Tensor:
    """Raw l1 distances ``[..., N, N]`` by ``torch.cdist`` (any device and dtype)."""
    return torch.cdist(z, z, p=1.0)


def pairwise_l1(z: Tensor) -> Tensor:
    """Raw, differentiable l1 distances ``[..., N, N]`` of the rows of ``z`` ``[..., N, d]``."""
    if kernel_applies(z):
        return pairwise_l1_kernel(z)
    return pairwise_l1_cdist(z)


def l1_gradient_chunked(z: Tensor, grad_distances: Tensor) -> Tensor:
    """``sum_j (g_ij + g_ji) sign(z_i - z_j)`` ``[..., N, d]`` in torch, by blocks of rows.

    Any device and dtype. Never holds more than about :data:`CHUNK_ELEMENTS` elements of
    the ``[N, N, d]`` signs at once (``torch.cdist``'s own backward holds all of them).
    """
    if z.dim() == 3:
        return torch.stack([l1_gradient_chunked(zk, gk)
                            for zk, gk in zip(z, grad_distances, strict=True)])
    n, d = z.shape
    weights = grad_distances + grad_distances.T
    rows = max(1, CHUNK_ELEMENTS // max(n * d, 1))
    grad = torch.empty_like(z)
    for start in range(0, n, rows):
        block = slice(start, start + rows)
        signs = torch.sign(z[block, None, :] - z[None, :, :])  # [rows, N, d]
        grad[block] = torch.bmm(weights[block, None, :], signs).squeeze(1)
    return grad


class _PairwiseL1Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return torch.cdist(z, z, p=1.0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_distances: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        return l1_gradient_chunked(z, grad_distances)


def pairwise_l1_chunked(z: Tensor) -> Tensor:
    """Raw l1 distances ``[..., N, N]``: ``torch.cdist`` forward, chunked torch backward."""
    return _PairwiseL1Chunked.apply(z)


def l1_layer_loss(y: Tensor, target: Tensor, mask: Tensor | None, divisor: float
                  ) -> tuple[Tensor, Tensor]:
    """A layer's l1 distance-matching losses and their gradients, by one C call.

    ``y`` ``[K, N, d]`` CPU float32 (:func:`kernel_applies`), ``target`` ``[K, N, N]``,
    ``mask`` ``[K, N, N]`` bool or None. Returns the losses ``[K]``,
    ``L_k = ||mask_k ⊙ (target_k - D(y_k) / divisor)||_F``, and ``dL_k/dy_k`` ``[K, N, d]``
    (zero where ``L_k = 0``, as autograd through the norm), equal to those of
    ``torch.linalg.vector_norm`` over :func:`pairwise_l1` up to float rounding. Each pair
    i < j is visited once in each of the two passes (distances and the loss, then the
    gradient); the ``[N, N]`` intermediate matrices of the torch expression are never made.
    """
    kernel = load_kernel()
    if kernel is None:
        raise RuntimeError(f"the l1 kernel is unavailable: {kernel_status()}")
    if not (y.device.type == "cpu" and y.dtype == torch.float32 and y.dim() == 3):
        raise ValueError("the l1 layer loss takes a [K, N, d] float32 CPU tensor")
    y = y.detach().contiguous()
    target = target.detach().to(torch.float32).expand(y.shape[0], -1, -1).contiguous()
    if mask is not None:
        mask = mask.to(torch.bool).expand_as(target).contiguous()
    return kernel.layer_loss(y, target, mask, float(divisor), _threads(y.shape))


def pairwise_l1_backward(z: Tensor, grad_distances: Tensor) -> Tensor:
    """The gradient ``[..., N, d]`` of ``sum(grad_distances * pairwise_l1(z))`` w.r.t. ``z``.

    ``grad_distances`` is ``[..., N, N]``. For callers that compute gradients by hand, with
    no autograd graph; bit for bit what backpropagating through :func:`pairwise_l1` gives
    (the same implementation is chosen).
    """
    z = z.detach()
    if kernel_applies(z):
        kernel = load_kernel()
        assert kernel is not None  # kernel_applies checked it
        grad = kernel.backward(_as_batch(z), _as_batch(grad_distances.to(z.dtype)),
                               _threads(z.shape))
        return grad if z.dim() == 3 else grad.squeeze(0)
    with torch.enable_grad():
        leaf = z.requires_grad_()
        return torch.autograd.grad(pairwise_l1_cdist(leaf), leaf, grad_distances)[0]
