"""The HMS baseline: MobileNetV3 on log spectrograms of the double-banana chains."""

import numpy as np
import pytest
import torch

from models import create_model, get_input_contract
from models.hms import CHAINS


def test_spectrogram_images_of_the_chains():
    model = create_model("hms_mobilenetv3", head="classification", n_outputs=6)
    t = torch.arange(4000) / 1000.0
    x = 0.01 * torch.randn(2, 16, 4000, generator=torch.Generator().manual_seed(0))
    x[:, list(CHAINS["LP"])] += torch.sin(2 * np.pi * 7.0 * t)  # a 7-Hz rhythm on the left parasagittal chain
    image = model.spectrogram(x)
    assert image.shape == (2, 4, 40, 33)  # 0.5-20 Hz in 0.5-Hz bins, 1 + 4000 / 125 frames
    np.testing.assert_allclose(model.freqs_hz[[0, -1]], [0.5, 20.0])
    torch.testing.assert_close(image.mean(dim=(2, 3)), torch.zeros(2, 4), atol=1e-5, rtol=0)
    peak_hz = model.freqs_hz[image[:, 2, :, 5:-5].mean(dim=-1).argmax(dim=-1)]
    assert peak_hz.tolist() == [7.0, 7.0]  # LP is image channel 2 (LL, RL, LP, RP)
    assert model(x).shape == (2, 6)


def test_every_parameter_learns_and_the_contract():
    torch.manual_seed(0)
    model = create_model("hms_mobilenetv3", head="classification", n_outputs=3, n_patches=5, chains=False)
    assert model.n_times == 1000
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 16, 1000)), torch.tensor([0, 2]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    groups = model.group_matcher()
    assert groups["blocks"].startswith(r"^backbone\.")
    contract = get_input_contract("hms_mobilenetv3")
    assert (contract.family, contract.sfreq, contract.max_times) == ("hms", 1000.0, 4000)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="'head' parameter"):
        create_model("hms_mobilenetv3")
    with pytest.raises(ValueError, match="chains=true needs the 16 channels"):
        create_model("hms_mobilenetv3", head="classification", n_outputs=2, n_chans=8)
    with pytest.raises(ValueError, match="'win_s' parameter"):
        create_model("hms_mobilenetv3", head="classification", n_outputs=2, n_patches=2)
