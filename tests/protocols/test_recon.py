"""Reconstruction from the frozen code (protocols/recon.py): metrics and the image grid, the decoder width
as a real setting. One thread, CPU."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from repeval.plugin.protocol import ProtocolInput, Split
from repeval.protocols.recon import ReconConfig, recon_protocol
from tests.helpers import smooth_images

pytestmark = pytest.mark.usefixtures("one_thread")


def make_input(x_tr, y_tr, x_te, y_te, n_classes=10, img_tr=None, img_te=None, tap="conv") -> ProtocolInput:
    return ProtocolInput(tap, Split(x_tr, y_tr, img_tr), Split(x_te, y_te, img_te), n_classes)


def test_recon_protocol_metrics_and_grid(tmp_path):
    img = smooth_images(48, 18)
    codes = img[:, :, ::8, ::8].flatten(1)                      # 48 values per image
    lab = torch.zeros(48, dtype=torch.long)
    inp = make_input(codes[:32], lab[:32], codes[32:], lab[32:], img_tr=img[:32], img_te=img[32:], tap="y")
    cfg = ReconConfig(epochs=2, batch_size=16, lr=1e-3, grid_n=8)
    r = recon_protocol(replace(inp, artifact_stem=tmp_path / "grids" / "mymodel"), cfg, seed=0)
    assert set(r) >= {"mse", "ssim", "ms_ssim", "ssim_released"}
    assert 0 < r["mse"] < 4 and -1 <= r["ssim"] <= 1 and 0 <= r["ms_ssim"] <= 1
    png = tmp_path / "grids" / "mymodel.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recon_decoder_width_is_a_real_setting():
    from repeval.config import ConfigError, make_config
    from repeval.protocols.recon import ReconDecoder
    z = torch.randn(4, 64)
    wide, narrow = ReconDecoder(64), ReconDecoder(64, width=64)
    assert wide(z).shape == narrow(z).shape == (4, 3, 32, 32)
    n_params = lambda m: sum(p.numel() for p in m.parameters())
    assert n_params(narrow) * 20 < n_params(wide)            # the spec's 512-wide decoder is the default
    with pytest.raises(ConfigError, match="width"):
        make_config(ReconConfig, {"width": 12}, where="recon")
