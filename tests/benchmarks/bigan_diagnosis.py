"""Experiment: why does the BiGAN encoder collapse? (a script, not a test)

    python tests/benchmarks/bigan_diagnosis.py --data npz:../shared/data/cifar10-jpeg --images 20000

Trains the BiGAN family under several variants of the objective and optimiser, each from the same
seeded initialisation on the same seeded subset, and prints, every ``--every`` steps: each tap's
participation ratio (:mod:`repeval.estimators.spectrum`) on 2,048 seeded random test images; a linear probe's
test accuracy on ``fc`` (scikit-learn ``LogisticRegression`` on ``--probe`` seeded random training
images, tested on the 2,048); the mean losses; and ``grad_cos``, how much the per-image gradients on
the encoder's codes agree (mean cosine similarity within a batch; 1 = one common direction).
Variants (Donahue et al., ICLR 2017, Sec. 3 and App. C; Dumoulin et al., ICLR 2017, App. A):

- ``ours-v1``: repeval's BiGAN version 1: R1 penalty 0.5 |grad_(x,z) D|^2 on the (x, E(x)) pairs only,
  Adam 1e-4 (0.5, 0.999), z ~ N(0, I);
- ``no-gp``: the same without any penalty;
- ``gp-x``: the penalty on the x input only (the encoder's z is not smoothed away);
- ``gp-both``: the penalty on both pairs;
- ``published``: BiGAN's own settings: no penalty, Adam 2e-4 (0.5, 0.999), weight decay 2.5e-5,
  z ~ U[-1, 1]^64;
- ``ali-dropout``: ALI's discriminator regularisation and optimiser: dropout 0.2 after every hidden
  layer of D, no penalty, Adam 1e-4 (0.5, 1e-3).
The CPU's ISA and the load are printed; timings are wall seconds per step.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_info  # noqa: E402

from repeval.config import TrainConfig  # noqa: E402
from repeval.data import load_dataset  # noqa: E402
from repeval.models.bigan import BiGAN  # noqa: E402
from repeval.seeding import seed_everything  # noqa: E402
from repeval.estimators.spectrum import spectrum  # noqa: E402

VARIANTS = {
    "ours-v1": dict(penalize=("x", "z"), lr=1e-4, wd=0.0, prior="normal"),
    "no-gp": dict(penalize=(), lr=1e-4, wd=0.0, prior="normal"),
    "gp-x": dict(penalize=("x",), lr=1e-4, wd=0.0, prior="normal"),
    "gp-both": dict(penalize=("x", "z", "fake"), lr=1e-4, wd=0.0, prior="normal"),
    "published": dict(penalize=(), lr=2e-4, wd=2.5e-5, prior="uniform"),
    "ali-dropout": dict(penalize=(), lr=1e-4, wd=0.0, prior="normal", dropout=0.2, beta2=1e-3),
}


def with_dropout(disc: torch.nn.Module, p: float) -> None:
    """ALI's discriminator regularisation: dropout after every hidden activation of D(x, z)."""
    for seq in (disc.x_branch, disc.joint):
        layers = []
        for m in seq:
            layers.append(m)
            if isinstance(m, torch.nn.LeakyReLU):
                layers.append(torch.nn.Dropout(p))
        seq._modules.clear()
        for i, m in enumerate(layers):
            seq.add_module(str(i), m)


def step(model: BiGAN, x: torch.Tensor, opt: dict, v: dict) -> dict:
    z = torch.randn(x.shape[0], 64) if v["prior"] == "normal" else torch.rand(x.shape[0], 64) * 2 - 1
    e = model.encoder(x)["y"]
    xg = model.generator(z)
    real = (x.detach().requires_grad_(True), e.detach().requires_grad_(True))
    fake = (xg.detach().requires_grad_(True), z.requires_grad_(True))
    d_real, d_fake = model.disc(*real), model.disc(*fake)
    gan = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    gp = torch.zeros(())
    if v["penalize"]:
        ins = [real[0]] * ("x" in v["penalize"]) + [real[1]] * ("z" in v["penalize"])
        g = torch.autograd.grad(d_real.sum(), ins, create_graph=True)
        gp = 0.5 * sum(t.flatten(1).pow(2).sum(1) for t in g).mean()
        if "fake" in v["penalize"]:
            g = torch.autograd.grad(d_fake.sum(), fake, create_graph=True)
            gp = gp + 0.5 * sum(t.flatten(1).pow(2).sum(1) for t in g).mean()
    BiGAN.update(opt["disc"], gan + gp)
    ge = F.softplus(model.disc(x, e)).mean() + F.softplus(-model.disc(xg, z)).mean()
    cos = gradient_agreement(torch.autograd.grad(ge, e, retain_graph=True)[0])
    BiGAN.update(opt["model"], ge)
    return {"disc": gan.item(), "enc_gen": ge.item(), "gp": gp.item(), "grad_cos": cos}


def gradient_agreement(g: torch.Tensor) -> float:
    """Mean cosine similarity between the per-image gradients (B, 64) the encoder's codes receive:
    near 1 when every image's code is pushed the same way, near 0 for unrelated directions."""
    u = F.normalize(g.detach().double(), dim=1)
    b = u.shape[0]
    return float((u.sum(0).pow(2).sum() - b) / (b * (b - 1)))


@torch.no_grad()
def measure(model: BiGAN, ds, n_probe: int) -> str:
    from sklearn.linear_model import LogisticRegression
    g = torch.Generator().manual_seed(0)
    i_tr = torch.randperm(ds.x_train.shape[0], generator=g)[:n_probe]
    i_te = torch.randperm(ds.x_test.shape[0], generator=g)[:2048]
    model.eval()
    te = model.encoder(ds.x_test[i_te])
    tr = model.encoder(ds.x_train[i_tr])["fc"]
    model.train()
    prs = " ".join(f"{k} {spectrum(te[k])['participation_ratio']:5.1f}" for k in ("conv", "fc", "y"))
    mu, sd = tr.mean(0), tr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=300).fit(((tr - mu) / sd).numpy(), ds.y_train[i_tr].numpy())
    acc = clf.score(((te["fc"] - mu) / sd).numpy(), ds.y_test[i_te].numpy())
    return f"PR {prs} | fc linear probe {100 * acc:5.2f}%"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="npz:../shared/data/cifar10-jpeg")
    p.add_argument("--images", type=int, default=20000, help="training images (a seeded subset)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--probe", type=int, default=5000)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# CPU: {cpu_info()} | threads {torch.get_num_threads()} | load {os.getloadavg()}")
    ds = load_dataset(a.data)
    idx = torch.randperm(ds.x_train.shape[0], generator=torch.Generator().manual_seed(0))[:a.images]
    x = ds.x_train[idx]
    for name in a.variants.split(","):
        v = VARIANTS[name]
        seed_everything(0)
        model = BiGAN(TrainConfig(lr=v["lr"]))
        if v.get("dropout"):
            with_dropout(model.disc, v["dropout"])
        model.train()
        wd, betas = v["wd"], (0.5, v.get("beta2", 0.999))
        opt = {"model": torch.optim.Adam(list(model.encoder.parameters()) + list(model.generator.parameters()),
                                         lr=v["lr"], betas=betas, weight_decay=wd),
               "disc": torch.optim.Adam(model.disc.parameters(), lr=v["lr"], betas=betas, weight_decay=wd)}
        print(f"\n## {name}: {v}\nstep    0: {measure(model, ds, a.probe)}", flush=True)
        gen = torch.Generator().manual_seed(1)
        t0, sums = time.time(), {}
        for s in range(1, a.steps + 1):
            b = torch.randint(0, x.shape[0], (64,), generator=gen)
            for k, val in step(model, x[b], opt, v).items():
                sums[k] = sums.get(k, 0.0) + val
            if s % a.every == 0:
                losses = " ".join(f"{k} {val / a.every:.3f}" for k, val in sums.items())
                sums = {}
                print(f"step {s:4d}: {measure(model, ds, a.probe)} | {losses} | "
                      f"{(time.time() - t0) / s:.2f} s/step", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
