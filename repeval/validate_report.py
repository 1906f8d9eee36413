"""Files written by ``repeval validate``: per-check CSV and Markdown tables, PNG plots (matplotlib
Agg), a Markdown summary; every write is atomic (:mod:`repeval.storage`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .storage import atomic_write_bytes, atomic_write_text  # noqa: E402
from .validate_judge import CheckResult, bias_summary  # noqa: E402

LABELS = {"mine": "MINE (protocol)", "dv": "DV (separable critic)", "jsd_dv": "DV readout of JSD critic",
          "infonce": "infoNCE"}


def _png(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".4g")


def check_markdown(res: CheckResult, extra_tables: dict[str, pd.DataFrame] | None = None) -> str:
    lines = [f"# validate: {res.name}", "", f"wall time {res.wall_s:.1f} s", ""]
    lines += [f"- {v.line()}" for v in res.verdicts] + [""]
    lines += [f"{n}" for n in res.notes] + [""]
    lines += [_markdown(pd.DataFrame(res.rows)), "", "Columns:", ""]
    lines += [f"- `{k}`: {v}" for k, v in res.columns.items()]
    for title, df in (extra_tables or {}).items():
        lines += ["", f"## {title}", "", _markdown(df)]
    return "\n".join(lines) + "\n"


def write_check(res: CheckResult, out: Path) -> list[Path]:
    """CSV + Markdown table and the check's plot(s) under ``out``; returns the paths written."""
    df = pd.DataFrame(res.rows)
    paths = [atomic_write_text(out / f"{res.name}.csv", df.to_csv(index=False))]
    extra = {}
    if res.name == "gaussian":
        bias = pd.DataFrame(bias_summary(res.rows))
        extra["Bias by band of true MI (nats)"] = bias
        paths.append(atomic_write_text(out / "gaussian_bias.csv", bias.to_csv(index=False)))
    paths.append(atomic_write_text(out / f"{res.name}.md", check_markdown(res, extra)))
    paths += PLOTTERS[res.name](res, out)
    return paths


# ----------------------------------------------------------------------------- plots

def plot_gaussian(res: CheckResult, out: Path) -> list[Path]:
    df = pd.DataFrame(res.rows)
    log_k = res.info.get("log_k")
    paths = []
    for d, sub in df.groupby("d"):
        sub = sub.sort_values("true_mi")
        has_jsd = "jsd_bound" in sub
        fig, axes = plt.subplots(1, 2 if has_jsd else 1, figsize=(11 if has_jsd else 6, 4.5), squeeze=False)
        ax = axes[0][0]
        top = float(sub["true_mi"].max())
        ax.plot([0, top], [0, top], "k--", lw=1, label="truth  -(d/2) log(1-rho^2)")
        for col in ("mine", "dv", "jsd_dv", "infonce"):
            if col in sub:
                ax.plot(sub["true_mi"], sub[col], "o-", ms=4, lw=1, label=LABELS[col])
        if log_k is not None and "infonce" in sub and top >= 0.5 * log_k:
            ax.axhline(log_k, color="gray", ls=":", lw=1, label=f"log K = {log_k:.2f}")
        ax.set_xlabel("true I(X; Y) [nats]")
        ax.set_ylabel("estimate [nats]")
        ax.set_title(f"Gaussian, d = {d}")
        ax.legend(fontsize=8)
        if has_jsd:
            ax2 = axes[0][1]
            ax2.plot(sub["true_mi"], sub["jsd_bound"], "s-", ms=4, color="C2", label="JSD bound (held out)")
            ax2.axhline(2 * math.log(2), color="gray", ls=":", lw=1, label="2 log 2 (maximum)")
            ax2.set_xlabel("true I(X; Y) [nats]")
            ax2.set_ylabel("JSD bound (not nats of MI)")
            ax2.set_title(f"DIM's JSD objective, d = {d}")
            ax2.legend(fontsize=8)
        paths.append(_png(fig, out / f"gaussian_d{d}.png"))
    return paths


def plot_invariance(res: CheckResult, out: Path) -> list[Path]:
    df = pd.DataFrame(res.rows)
    sigmas = list(dict.fromkeys(df["sigma"]))
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4.5 * len(sigmas), 4.2), squeeze=False)
    for ax, sg in zip(axes[0], sigmas):
        sub = df[df["sigma"] == sg]
        truth = float(sub["true_mi"].iloc[0])
        pos = range(len(sub))
        ax.bar(pos, sub["mine"], color="C0", alpha=0.8, label="MINE (protocol), held out")
        ax.axhline(truth, color="k", ls="--", lw=1, label=f"truth (d/2) log(1 + 1/sigma^2) = {truth:.3f}")
        ax.set_xticks(list(pos), list(sub["map"]), rotation=20)
        ax.set_ylabel("I(g(X); Y) estimate [nats]")
        ax.set_title(f"sigma = {sg:g}")
        ax.set_ylim(0, max(truth, float(sub["mine"].max())) * 1.4)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Invariance: MINE on (g(X), X + sigma eps), g invertible")
    return [_png(fig, out / "invariance.png")]


def plot_ndm(res: CheckResult, out: Path) -> list[Path]:
    df = pd.DataFrame(res.rows).sort_values("true_tc")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    top = float(df["true_tc"].max())
    ax.plot([0, top], [0, top], "k--", lw=1, label="truth  -1/2 log det R")
    ax.plot(df["true_tc"], df["ndm"], "o-", ms=5, label="NDM (protocol)")
    ax.set_xlabel("true total correlation [nats]")
    ax.set_ylabel("NDM [nats]")
    ax.set_title("NDM calibration on Gaussian codes")
    ax.legend(fontsize=8)
    return [_png(fig, out / "ndm.png")]


def plot_ssim(res: CheckResult, out: Path) -> list[Path]:
    df = pd.DataFrame(res.rows)
    metrics = sorted(c for c in df.columns if c not in ("perturbation", "level"))
    ident = df[df["perturbation"] == "identity"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, xl in zip(axes, ("noise", "blur"), ("noise std (range [-1, 1])", "blur sigma [px]")):
        sub = df[df["perturbation"] == kind]
        if not (sub["level"] == 0).any():  # start the curve at the unperturbed image
            sub = pd.concat([ident.assign(perturbation=kind), sub])
        for m in metrics:
            ax.plot(sub["level"], sub[m], "o-", ms=4, label=m)
        ax.set_xlabel(xl)
        ax.set_ylabel("similarity to the original")
        ax.set_title(f"SSIM-type metrics under {kind}")
        ax.legend(fontsize=8)
    return [_png(fig, out / "ssim.png")]


PLOTTERS = {"gaussian": plot_gaussian, "invariance": plot_invariance, "ndm": plot_ndm, "ssim": plot_ssim}


def summary_markdown(summary: dict) -> str:
    lines = [f"# repeval validate ({summary['mode']})", "",
             f"Result: **{'PASS' if summary['passed'] else 'FAIL'}**; total wall time {summary['total_s']:.1f} s "
             f"on {summary['device']} ({summary['provenance']['machine'].get('platform', '')}, "
             f"torch threads {summary['torch_threads']}); config hash `{summary['config_hash']}`, "
             f"commit `{summary['provenance']['git_commit']}`.", ""]
    for name, c in summary["checks"].items():
        lines.append(f"## {name} ({c['wall_s']:.1f} s): {'PASS' if c['passed'] else 'FAIL'}")
        lines.append("")
        lines += [f"- {line}" for line in c["lines"]]
        lines += [""] + [f"{n}" for n in c["notes"]] + [""]
        lines.append("Files: " + ", ".join(f"`{p}`" for p in c["files"]))
        lines.append("")
    return "\n".join(lines)
