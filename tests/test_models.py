"""The encoder zoo (models/): registration, taps, training steps, checkpoints, adversarial parts.

Tiny data made here: random 3x32x32 images in [-1, 1], 32-unit DIM critics.
"""
from __future__ import annotations

import math

import pytest
import torch

import repeval
from repeval.cli import main as cli_main
from repeval.config import TrainConfig
from repeval.critics import DotCritic, gan_losses_with_gp
from repeval.registry import MODELS
from repeval.storage import atomic_torch_save, load_checkpoint, load_sealed
from repeval.train import train

repeval.load_builtins()
from repeval.models.dim import DIM, local_scores  # noqa: E402  (after the registry is loaded)

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


def make_cfg(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=32)
    base.update(kw)
    return TrainConfig(**base)


def build(name: str, seed: int = 0, critic_units: int = 32, **kw):
    torch.manual_seed(seed)
    return MODELS.get(name).build(make_cfg(**kw), 10, 3, {"dim": {"critic_units": critic_units}})


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(128, 3, 32, 32, generator=g) * 2 - 1, torch.randint(0, 10, (128,), generator=g)


def run_steps(fam, x, labels, steps: int, n_train: int = 128):
    fam.prepare(n_train)
    opts = fam.optimizers()
    fam.train()
    idx = torch.arange(x.shape[0])
    out = []
    for s in range(steps):
        torch.manual_seed(1234)            # the same noise every step: a truly repeated batch
        out.append({k: float(v) for k, v in fam.train_step(x, labels, idx, opts).items()})
    return out


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
def test_objective_decreases_on_a_repeated_batch(name, data):
    x, labels = data[0][:12], data[1][:12]
    hist = run_steps(build(name), x, labels, steps=10)
    for rec in hist:
        assert all(math.isfinite(v) for v in rec.values()), rec
    for key in OBJECTIVE[name]:
        first = sum(h[key] for h in hist[:3]) / 3
        last = sum(h[key] for h in hist[-3:]) / 3
        assert last < first - 1e-3 * max(1.0, abs(first)), (key, [h[key] for h in hist])


@pytest.mark.parametrize("name", TRAINED)
def test_train_one_epoch_and_checkpoint_round_trip(name, data, tmp_path):
    x, labels = data[0][:64], data[1][:64]       # two steps of 32
    fam = build(name)
    hist = train(fam, x, labels, tmp_path / "train.pt", name=name)
    assert len(hist) == 1 and all(math.isfinite(v) for v in hist[0].values())
    # save/load through repeval.storage into a differently initialised family
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


def test_nat_targets_are_checkpointed_and_reassigned(data):
    x, labels = data[0][:16], data[1][:16]
    fam = build("nat")
    run_steps(fam, x, labels, steps=3, n_train=128)
    t, a = fam.targets, fam.assignment
    assert t.shape == (128, 64) and torch.allclose(t.norm(dim=1), torch.ones(128), atol=1e-5)
    assert sorted(a.tolist()) == list(range(128))          # still a permutation
    assert set(a[:16].tolist()) == set(range(16))          # reassigned only among the batch's targets
    assert "targets" in fam.state_dict() and "assignment" in fam.state_dict()
    again = build("nat")
    again.prepare(128)
    assert torch.equal(again.targets, t)                    # seeded by derive_seed(cfg.seed, ...)


def _encoder_grads(fam, x):
    fam.zero_grad(set_to_none=True)
    taps = fam.encoder(x, local=True)
    total, _ = fam.encoder_loss(taps)
    total.backward()
    return torch.cat([p.grad.flatten() for p in fam.encoder.parameters() if p.grad is not None])


def test_prior_term_changes_the_encoder_gradients(data):
    x = data[0][:16]
    cfg = make_cfg()
    torch.manual_seed(0)
    with_prior = DIM(cfg, estimator="infonce", alpha=0.0, beta=1.0, gamma=0.1, critic_units=32).train()
    without = DIM(cfg, estimator="infonce", alpha=0.0, beta=1.0, gamma=0.0, critic_units=32).train()
    without.load_state_dict(with_prior.state_dict(), strict=False)
    g1, g0 = _encoder_grads(with_prior, x), _encoder_grads(without, x)
    assert torch.isfinite(g1).all() and torch.isfinite(g0).all()
    rel = (g1 - g0).norm() / g0.norm()
    assert rel > 1e-4, float(rel)
    # and the difference is exactly gamma times the prior term's gradient
    with_prior.zero_grad(set_to_none=True)
    with_prior.prior_encoder_loss(with_prior.encoder(x)["y"]).backward()
    gp = torch.cat([p.grad.flatten() for p in with_prior.encoder.parameters() if p.grad is not None])
    assert (g1 - g0 - 0.1 * gp).norm() < 0.05 * (0.1 * gp).norm()


def test_gradient_penalty_value_and_effect():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 1)
    z, q = torch.rand(32, 64), torch.rand(32, 64)
    _, gp = gan_losses_with_gp(lin, (z,), (q,))
    # D linear: grad_in D = w for every sample, so 0.5 * (|w|^2 + |w|^2) = |w|^2
    assert torch.allclose(gp, lin.weight.pow(2).sum(), rtol=1e-5)
    _, gp_real = gan_losses_with_gp(lin, (z,), (q,), penalize="real")          # BiGAN's form
    assert torch.allclose(gp_real, 0.5 * lin.weight.pow(2).sum(), rtol=1e-5)
    disc = DIM(make_cfg(), alpha=0.0, beta=1.0, gamma=0.1).prior_disc
    gan, gp = gan_losses_with_gp(disc, (z,), (q,))
    params = list(disc.parameters())
    g_gan = torch.autograd.grad(gan, params, retain_graph=True)
    g_gp = torch.autograd.grad(gp, params, allow_unused=True)   # the last bias does not enter grad_in D
    g_gp = [torch.zeros_like(p) if g is None else g for g, p in zip(g_gp, params)]
    assert float(gp.detach()) > 0
    assert max(float(g.abs().max()) for g in g_gp) > 1e-6           # the penalty moves D
    total = [a + b for a, b in zip(g_gan, g_gp)]
    assert any(not torch.allclose(a, b) for a, b in zip(total, g_gan))


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
def test_discriminator_learns_with_the_encoder_frozen(name, data):
    x = data[0][:12]

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


def test_bigan_players_learn_against_a_frozen_discriminator(data):
    x = data[0][:12]
    fam = build("bigan")
    opts = fam.optimizers()
    fam.train()
    losses = []
    for _ in range(10):
        torch.manual_seed(7)
        real, fake = fam.forward_pairs(x)
        loss = fam.player_loss(real, fake)
        fam.update(opts["model"], loss)
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1e-3, losses


@pytest.mark.parametrize("gemm", ["conv", "linear"])
def test_dim_local_critic_layout(gemm):
    torch.manual_seed(0)
    net = DotCritic(128, 48, gemm=gemm)
    m = torch.randn(4, 128, 8, 8)
    out = net(m)
    assert out.shape == (4, 64, 48)
    # LayerNorm over channels at every location
    assert torch.allclose(out.mean(-1), torch.zeros(4, 64), atol=1e-5)
    # the same numbers as the released NCHW network (MI1x1ConvNet) at each location
    ref = net.conv2(torch.relu(net.bn(net.conv1(m)))) + net.shortcut(m)
    ref = net.ln(ref.permute(0, 2, 3, 1)).reshape(4, 64, 48)
    assert torch.allclose(out, ref, atol=1e-5)
    g = DotCritic(64, 48, gemm=gemm)(torch.randn(4, 64))
    assert g.shape == (4, 1, 48)
    s = local_scores(g, out)
    assert s.shape == (4, 4, 64)
    assert torch.allclose(s, torch.einsum("ixd,jld->ijl", g, out), atol=1e-4)
    w = DotCritic(64, 128, gemm=gemm).shortcut.weight[:, :, 0, 0]
    assert torch.equal(torch.diagonal(w[:64]), torch.ones(64)) and w[64:].abs().max() <= 0.01


def test_bf16_precision_runs_a_dim_step(data):
    # (slow on CPUs without native bf16, e.g. AVX2-only: kept tiny)
    x = data[0][:8]
    fam = build("dim-l-infonce", precision="bf16", critic_units=16)
    hist = run_steps(fam, x, data[1][:8], steps=1)
    assert all(math.isfinite(v) for v in hist[0].values())


@pytest.mark.parametrize("name", ["nat", "dim-lg"])
def test_same_seed_same_numbers(name, data):
    x, labels = data[0][:8], data[1][:8]
    a = run_steps(build(name), x, labels, steps=2)
    b = run_steps(build(name), x, labels, steps=2)
    assert a == b
