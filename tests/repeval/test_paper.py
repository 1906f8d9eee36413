"""The paper's published numbers (repeval/report/paper.py): loaded from the package, our datasets and models mapped
onto its tables and rows."""
from __future__ import annotations

from repeval.report import paper

DS = "cifar10-jpeg"


def test_paper_numbers_load_from_package_and_map_datasets():
    t1 = paper.paper_values(1, "cifar10")
    assert t1[("beta-vae", "conv")] == 62.4                         # matched by model name, not "beta-VAE"
    assert paper.paper_values(1, DS) == t1                          # the JPEG copy compares with cifar10
    assert paper.paper_values(1, "cifar100")[("ae", "y")] == 27.44
    assert paper.paper_values(1, "digits") == {}
    assert ("supervised", "conv") not in t1                         # blank in the paper
    t4 = paper.paper_values(4, "cifar10")
    assert (t4[("dim-l-infonce", "svm_conv_mean")], t4[("dim-l-infonce", "svm_conv_std")]) == (63.25, 0.86)
    assert t4[("vae", "msssim")] == 0.72                            # the paper's MS-SSIM column
    assert paper.paper_values(4, "cifar100") == {}
    assert ("dim-l-infonce", "DIM(L)") in paper.paper_rows(4, "cifar10")   # the paper's label kept beside
    assert paper.row_order(1)[:3] == ("supervised", "vae", "ae") and paper.row_order(1)[-2:] == ("dim-lg", "random")
