"""Benchmark: images per second of one training step per encoder family (a script, not a test).

    python tests/benchmarks/train_throughput.py                       # cpu, fp32, 2048-unit critics
    python tests/benchmarks/train_throughput.py --precision bf16 --critic-units 1024
    python tests/benchmarks/train_throughput.py --families dim-l-infonce --batches 3 --rounds 5

Every measurement is one ``Family.train_step`` on a cifar10-size batch (64 x 3 x 32 x 32, random
images in [-1, 1]) including all of the family's optimiser steps. The reference is the bare
shared encoder's forward + backward + Adam step on a trivial loss (mean of y^2), at the same batch
size and precision, measured in the same process. Measurements are interleaved (reference, then
each family, repeated ``--rounds`` times) and the medians reported, with each family's ratio to the
reference (median of the per-round ratios), because other processes share the CPU: the load
average is printed before and after. Each family's step is also set against the GEMM bound: its
floating-point work (torch's FlopCounterMode on one untimed step, or for DIM(L), whose gradient
penalty it cannot follow, :func:`dim_l_gflop_per_image`) times its img/s over the rate
of the critic-sized product (4096 x D x D) measured in the same process: the better of torch's
matmul (MKL) and oneDNN's 1x1 convolution, printed each (:func:`gemm_rates`). ``--threads`` sets
torch's intra-op threads; on oversubscribed cores OpenMP spin-waiting can make 2 threads far slower
than 1 (set OMP_WAIT_POLICY=PASSIVE in the environment to avoid it).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch


REF = "encoder (reference)"


def cpu_info() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} [{' '.join(isa) or 'isa unknown'}]"


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dim_l_gflop_per_image(units: int, n: int = 64, locs: int = 64, c_local: int = 128, y_dim: int = 64) -> float:
    """GEMM work of one DIM(L) step per image: forward + input-grad + weight-grad (3x) of the local
    critic (conv1, shortcut, conv2 at every location), the y critic, the (N, N*L) scores, and the
    encoder's 43.6 MFLOP forward (Hjelm et al. 2019, App. A encoder)."""
    local = 2 * locs * (2 * c_local * units + units * units)
    glob = 2 * (2 * y_dim * units + units * units)
    scores = 2 * n * locs * units
    return 3 * (local + glob + scores + 43.6e6) / 1e9


def native_bf16(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def gemm_rates(units: int, device: str, dtype=torch.float32, reps: int = 5, rows: int = 4096) -> dict[str, float]:
    """GFLOP/s of the critic's dominant product, (rows x D) @ (D x D), in this process, through each
    of torch's CPU backends: ``matmul`` (BLAS: MKL) and ``conv1x1`` (oneDNN's channels-last 1x1
    convolution, the form the critics take on AVX-512 hosts); on CUDA the matmul only. Each the best of
    ``reps`` after three warm-up products (the first ones run slower while the cores clock up). The
    two differ by host: MKL runs its AVX2 kernels on AMD CPUs, so on an AVX-512 EPYC oneDNN's
    product was measured at about twice MKL's."""
    a = torch.randn(rows, units, device=device, dtype=dtype)
    w = torch.randn(units, units, device=device, dtype=dtype)
    forms = {"matmul": lambda: a @ w}
    if not device.startswith("cuda"):
        x = a.view(rows // 64, 8, 8, units).permute(0, 3, 1, 2)       # (N, D, 8, 8) channels-last
        k = w.t().contiguous().view(units, units, 1, 1)
        forms["conv1x1"] = lambda: torch.nn.functional.conv2d(x, k)
    rates = {}
    for name, f in forms.items():
        for _ in range(3):
            f()
        sync(device)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            f()
            sync(device)
            best = min(best, time.perf_counter() - t)
        rates[name] = 2 * rows * units * units / best / 1e9
    return rates


def gemm_bound(units: int, device: str, dtype=torch.float32) -> tuple[float, str]:
    """The host's GEMM bound: the best rate over torch's backends (:func:`gemm_rates`), and the line
    that says each."""
    rates = gemm_rates(units, device, dtype)
    return max(rates.values()), ", ".join(f"{k} {v:.1f}" for k, v in rates.items())


def encoder_reference(cfg):
    """The bare SharedEncoder + the families' Adam on mean(y^2): the cost every family pays at
    least once per step (a :class:`repeval.plugin.family.Family`, so the optimiser and autocast match)."""
    from repeval.engine.train import Family

    class EncoderOnly(Family):
        def train_step(self, x, labels, index, opt):
            with self.amp(x):
                y = self.encoder(x)["y"]
            loss = y.float().pow(2).mean()
            self.update(opt["model"], loss)
            return {"loss": loss.detach()}

    return EncoderOnly(cfg)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--critic-units", type=int, default=2048)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--batches", type=int, default=2, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians reported)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--families", default="", help="comma list (default: every trained family)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import repeval
    from repeval.config import TrainConfig
    from repeval.registry import MODELS
    repeval.load_builtins()

    cfg = TrainConfig(precision=args.precision, batch_size=args.batch_size)
    units = {"dim": {"critic_units": args.critic_units}}
    names = [n.strip() for n in args.families.split(",") if n.strip()] or \
        [n for n in MODELS if MODELS.get(n).build(TrainConfig(), 10, 3, MODELS.get(n).family_config({"dim": {"critic_units": 8}})).trains]
    dev = torch.device(args.device)
    n, bs = args.batch_size * (args.batches + 1), args.batch_size
    g = torch.Generator().manual_seed(0)
    x_all = (torch.rand(n, 3, 32, 32, generator=g) * 2 - 1).to(dev)
    y_all = torch.randint(0, 10, (n,), generator=g).to(dev)

    print(f"# torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, cpu {cpu_info()}")
    print(f"# precision {args.precision}, critic_units {args.critic_units}, batch {bs}, "
          f"{args.batches} timed steps x {args.rounds} rounds; load average before: {load()}")

    if args.precision == "bf16" and not native_bf16(args.device):
        print("# WARNING: no native bf16 on this CPU (oneDNN reports no bf16 support): bf16 runs emulated, "
              "far slower than fp32")
    runners = {}
    for name in [REF, *names]:
        torch.manual_seed(0)
        fam = (encoder_reference(cfg) if name == REF
               else MODELS.get(name).build(cfg, 10, 3, MODELS.get(name).family_config(units))).to(dev)
        fam.prepare(n)
        opts = fam.optimizers()
        fam.train()
        runners[name] = (fam, opts)

    def step(r, s):
        idx = torch.arange(s * bs, (s + 1) * bs, device=dev)
        r[0].train_step(x_all[idx], y_all[idx], idx, r[1])

    def measure(r) -> float:
        step(r, args.batches)                       # warm-up (allocations, oneDNN kernels)
        sync(args.device)
        t = time.perf_counter()
        for s in range(args.batches):
            step(r, s)
        sync(args.device)
        return args.batches * bs / (time.perf_counter() - t)

    flops = {}
    from torch.utils.flop_counter import FlopCounterMode
    for name, r in runners.items():          # one untimed step under the FLOP counter (products, convolutions)
        try:
            counter = FlopCounterMode(display=False)
            with counter:
                step(r, args.batches)
            flops[name] = counter.get_total_flops() / bs
        except RuntimeError:                 # the counter cannot follow a double backward (gradient penalties)
            flops[name] = dim_l_gflop_per_image(args.critic_units) * 1e9 if name.startswith("dim-l") else float("nan")

    rates: dict[str, list[float]] = {k: [] for k in runners}
    ratios: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        ref = measure(runners[REF])
        rates[REF].append(ref)
        ratios[REF].append(1.0)
        for name in names:
            r = measure(runners[name])
            rates[name].append(r)
            ratios[name].append(r / ref)
            print(f"  {name:<20} {r:8.1f} img/s  (reference this round {ref:7.1f})", file=sys.stderr, flush=True)

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    bound, each = gemm_bound(args.critic_units, args.device, dtype)
    print(f"# GEMM bound: {args.precision} (4096x{args.critic_units}x{args.critic_units}) {bound:.1f} GFLOP/s now, "
          f"the best of {each} GFLOP/s; fraction = GFLOP/s reached (FLOPs: torch's FlopCounterMode on one step; DIM(L), whose prior's gradient penalty it cannot follow: the analytic count below) / that bound")
    print(f"{'family':<22}{'img/s (median)':>16}{'ratio to encoder':>18}{'GFLOP/img':>11}{'fraction':>10}"
          f"{'  img/s per round'}")
    for k in runners:
        med = statistics.median(rates[k])
        print(f"{k:<22}{med:>16.1f}{statistics.median(ratios[k]):>18.3f}{flops[k] / 1e9:>11.3f}"
              f"{med * flops[k] / 1e9 / bound:>10.2f}  " + " ".join(f"{v:.1f}" for v in rates[k]))
    if any(k.startswith("dim-l") for k in names):
        work = dim_l_gflop_per_image(args.critic_units)
        if args.precision == "bf16" and not native_bf16(args.device):
            print(f"# DIM(L) GEMM work {work:.2f} GFLOP/image; no GEMM bound printed: bf16 is emulated here")
        else:
            rate, _ = gemm_bound(args.critic_units, args.device, dtype)
            print(f"# DIM(L) GEMM work {work:.2f} GFLOP/image; {args.precision} GEMM (4096x{args.critic_units}"
                  f"x{args.critic_units}) now {rate:.1f} GFLOP/s -> pure-GEMM bound {rate / work:.1f} img/s "
                  f"(a DIM(L) step reaches img/s / bound of it)")
    print(f"# load average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
