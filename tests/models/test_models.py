"""The encoder zoo as a whole (models/): registration and display names, family settings, taps, training
steps, checkpoints, the discriminators of the adversarial families, determinism.

Tiny data (the image_batch fixture): random 3x32x32 images in [-1, 1], 32-unit DIM critics.
"""
from __future__ import annotations

import math

import pytest
import torch

from repeval.cli import main as cli_main
from repeval.registry import MODELS
from repeval.store.storage import atomic_torch_save, load_checkpoint, load_sealed
from repeval.engine.train import train
from tests.helpers import build, run_steps


DISPLAY = {"ae": "AE", "vae": "VAE", "beta-vae": "β-VAE", "aae": "AAE", "bigan": "BiGAN", "nat": "NAT",
           "dim-g": "DIM(G)", "dim-l-dv": "DIM(L) (DV)", "dim-l-jsd": "DIM(L) (JSD)",
           "dim-l-infonce": "DIM(L) (infoNCE)", "dim-lg": "DIM(L+G)", "supervised": "Fully supervised",
           "random": "Random init"}


TRAINED = [n for n in DISPLAY if n != "random"]


# the non-adversarial loss that must go down on a repeated batch
OBJECTIVE = {"ae": ["mse"], "vae": ["loss"], "beta-vae": ["loss"], "aae": ["mse"], "nat": ["nat"],
             "supervised": ["ce"], "dim-g": ["global"], "dim-l-dv": ["local"], "dim-l-jsd": ["local"],
             "dim-l-infonce": ["local"], "dim-lg": ["local", "global"]}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_list_shows_the_zoo(capsys):
    assert cli_main(["list"]) == 0
    text = capsys.readouterr().out
    for name, display in DISPLAY.items():
        assert name in MODELS
        assert MODELS.get(name).display == display
        assert any(line.split()[:1] == [name] and display in line for line in text.splitlines()), name


def test_family_configs_state_the_choices():
    hp = {n: vars(build(n).fcfg) for n in TRAINED}
    assert hp["beta-vae"]["beta"] == 4.0 and hp["vae"]["beta"] == 1.0
    assert (hp["dim-g"]["alpha"], hp["dim-g"]["beta"], hp["dim-g"]["gamma"]) == (1.0, 0.0, 1.0)
    assert (hp["dim-lg"]["alpha"], hp["dim-lg"]["beta"], hp["dim-lg"]["gamma"]) == (0.5, 0.1, 0.1)
    for est in ("dv", "jsd", "infonce"):
        h = hp[f"dim-l-{est}"]
        assert (h["estimator"], h["alpha"], h["beta"], h["gamma"], h["critic_units"]) == (est, 0.0, 1.0, 0.1, 32)
    assert hp["dim-g"]["estimator"] == hp["dim-lg"]["estimator"] == "jsd"


@pytest.mark.parametrize("name", list(DISPLAY))
def test_taps_have_the_contract_shapes(name):
    fam = build(name).eval()
    with torch.no_grad():
        taps = fam.encoder(torch.zeros(3, 3, 32, 32), local=True)
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "local": (3, 128, 8, 8), "conv": (3, 256, 4, 4), "fc": (3, 1024), "y": (3, 64)}


@pytest.mark.parametrize("name", list(OBJECTIVE))
def test_objective_decreases_on_a_repeated_batch(name, image_batch):
    x, labels = image_batch[0][:12], image_batch[1][:12]
    hist = run_steps(build(name), x, labels, steps=10)
    for rec in hist:
        assert all(math.isfinite(v) for v in rec.values()), rec
    for key in OBJECTIVE[name]:
        first = sum(h[key] for h in hist[:3]) / 3
        last = sum(h[key] for h in hist[-3:]) / 3
        assert last < first - 1e-3 * max(1.0, abs(first)), (key, [h[key] for h in hist])


@pytest.mark.parametrize("name", TRAINED)
def test_train_one_epoch_and_checkpoint_round_trip(name, image_batch, tmp_path):
    x, labels = image_batch[0][:64], image_batch[1][:64]       # two steps of 32
    fam = build(name)
    hist = train(fam, x, labels, tmp_path / "train.pt", name=name)
    assert len(hist) == 1 and all(math.isfinite(v) for v in hist[0].values())
    # save/load through repeval.store.storage into a differently initialised family
    atomic_torch_save(tmp_path / "copy.pt", fam.state_dict())
    other = build(name, seed=99)
    other.load_state_dict(load_checkpoint(tmp_path / "copy.pt"))
    fam.eval(), other.eval()
    with torch.no_grad():
        a, b = fam.encoder(x[:8], local=True), other.encoder(x[:8], local=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = fam.state_dict(), other.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the training checkpoint holds the same family state
    ck = load_sealed(tmp_path / "train.pt")
    assert all(torch.equal(ck["family"][k], sa[k]) for k in sa)


def _disc_only(fam, x, disc_step, steps=10):
    """Discriminator updates with the other players frozen (no optimiser step for them)."""
    fam.prepare(128)
    opts = fam.optimizers()
    fam.train()
    losses = []
    for _ in range(steps):
        torch.manual_seed(7)
        losses.append(disc_step(fam, x, opts))
    return losses


@pytest.mark.parametrize("name", ["aae", "dim-l-jsd", "bigan"])
def test_discriminator_learns_with_the_encoder_frozen(name, image_batch):
    x = image_batch[0][:12]

    def step(fam, x, opts):
        if name == "bigan":
            real, fake = fam.forward_pairs(x)
            gan, gp = fam.disc_losses(real, fake)
            key = "disc"
        else:
            with torch.no_grad():
                y = fam.encoder(x)["y"]
            gan, gp = fam.disc_losses(y) if name == "aae" else fam.prior_disc_losses(y)
            key = "disc" if name == "aae" else "prior"
        fam.update(opts[key], gan + gp)
        return float(gan.detach())

    losses = _disc_only(build(name), x, step)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1e-3, losses


@pytest.mark.parametrize("name", ["nat", "dim-lg"])
def test_same_seed_same_numbers(name, image_batch):
    x, labels = image_batch[0][:8], image_batch[1][:8]
    a = run_steps(build(name), x, labels, steps=2)
    b = run_steps(build(name), x, labels, steps=2)
    assert a == b
