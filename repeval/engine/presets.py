"""Named budgets. A preset is a set of overrides per config section; the resolved values are
recorded in every result, so a table always says which budget produced it.

Sections: ``train`` (:class:`repeval.config.TrainConfig`), one per encoder family with settings
(e.g. ``dim``: the family's ``Config``) and one per protocol (its config class). A preset must hold a
section for every protocol it is asked to run: a missing budget is an error, never a silent default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Registry


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    dataset: str
    sections: dict = field(default_factory=dict)   # section -> {key: value}

    def section(self, name: str) -> dict:
        return dict(self.sections.get(name, {}))


PRESETS: Registry[Preset] = Registry("preset")


def _add(p: Preset) -> None:
    PRESETS.register(p.name, p)


_add(Preset(
    "quick", "embedded default: the whole zoo and every protocol in a few minutes on 2 CPU cores",
    "digits",
    {"train": {"epochs": 1, "precision": "fp32"},
     "dim": {"critic_units": 256},
     "mlp": {"epochs": 10},
     "svm": {"epochs": 10, "min_steps": 20, "c_grid": (0.01, 0.1, 1.0), "max_cycles": 3},
     "recon": {"epochs": 2, "width": 64, "lr": 1e-3},
     "mine": {"steps": 300, "eval_every": 25, "batch_size": 64, "conv_channels": (16, 32, 64)},
     "ndm": {"steps": 300, "eval_every": 25, "batch_size": 256, "hidden": (256, 64)},
     "knn": {"k": (20, 200)},
     "linear": {"weight_decays": (1e-4, 1e-2), "max_iter": 100}}))

# Protocol budgets for cifar10-size data, shared by the cpu and curve presets. Their dataset is CIFAR-10
# (torchvision's files; --download fetches them); any other 32x32 copy runs with --dataset npz:DIR.
# MINE and NDM run fixed cosine budgets of 1,000 critic steps (about two minutes each per encoder on 2
# CPU cores, so one encoder's whole evaluation fits in 15 minutes); their `converged` flag says when a
# critic was still rising at the end, i.e. the value is a budget-limited, relative score.
CIFAR_PROTOCOLS = {
    "mlp": {"epochs": 10},
    "svm": {"epochs": 10, "max_cycles": 3, "tol": 2e-3},
    "recon": {"epochs": 2, "max_train": 10000, "width": 256},
    "mine": {"steps": 1000, "batch_size": 128, "max_train": 20000, "max_eval": 5000},
    "ndm": {"steps": 1000, "batch_size": 2048},
    "knn": {"k": (20, 200)},
    "linear": {"weight_decays": (1e-5, 1e-4, 1e-3, 1e-2), "max_iter": 200}}

_add(Preset(
    "cpu", "cifar10-size data: the whole zoo and every protocol after one training epoch, in the "
    "background on 2 CPU cores",
    "cifar10",
    {"train": {"epochs": 1, "precision": "fp32"}, "dim": {"critic_units": 1024}, **CIFAR_PROTOCOLS}))

# Every row of the paper's Tables 1 and 4 (the whole zoo; `repeval run --preset curve` without --models).
CURVE_MODELS = ("random", "ae", "vae", "beta-vae", "aae", "bigan", "nat", "dim-g", "dim-l-dv", "dim-l-jsd",
                "dim-l-infonce", "dim-lg", "supervised")

_add(Preset(
    "curve", "cifar10-size learning curves: every paper row trained 10 epochs on 2 CPU cores "
    "(fp32, 1024-unit critics), the probes at epochs 1, 3, 6 and 10, every protocol at 10; several "
    "stretches of background compute, resumable (models: " + ", ".join(CURVE_MODELS) + "; extra training "
    "seeds: --train-seeds 1,2 --set train.eval_epochs=10)",
    "cifar10",
    {"train": {"epochs": 10, "eval_epochs": (1, 3, 6, 10), "precision": "fp32"}, "dim": {"critic_units": 1024},
     **CIFAR_PROTOCOLS}))

_add(Preset(
    "paper", "the paper's budget (1000 epochs, 2048-unit critics, fp32): for a GPU",
    "cifar10",
    {"train": {"epochs": 1000, "precision": "fp32"},
     "dim": {"critic_units": 2048},
     "mlp": {"epochs": 200, "schedule": "multistep", "milestones": (50, 100), "lr": 1e-4, "beta1": 0.5,
             "batch_size": 64},
     "svm": {"epochs": 10, "max_cycles": 10},
     "recon": {"epochs": 100},
     "mine": {"steps": 20000, "batch_size": 256},
     "ndm": {"steps": 10000, "batch_size": 10000},
     "knn": {"k": (20, 200)},
     "linear": {"weight_decays": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2), "max_iter": 200}}))
