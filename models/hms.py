"""The HMS seed's baseline: a timm MobileNetV3 on log spectrograms of the double-banana chains.

The winning solutions of the Kaggle "HMS - Harmful Brain Activity Classification" competition (2024)
classify images of EEG spectrograms with ImageNet CNNs. :class:`HMSMobileNetV3` does this on the
project's windows, so that it runs on the same preprocessed folders, splits, seeds and metrics as M4CEA
(DESIGN.md section 9):

1. Input: a window ``(batch, n_chans, n_times)`` as the fine-tuning loader gives it (the double banana
   at ``sfreq``, each channel divided by its 95th percentile of ``|x|``;
   see :func:`models.get_input_contract`).
2. Spectrogram of each bipolar channel: short-time Fourier transform (:func:`torch.stft`) with a Hann window
   of ``win_s`` (1 s), hop ``hop_s`` (0.125 s), FFT length two windows (0.5 Hz bins), centred frames
   (the window zero-padded by one FFT length / 2 on each side);
   power ``|X|^2`` of the bins from ``fmin_hz`` to ``fmax_hz`` (0.5-20 Hz: the band of the seizure,
   periodic-discharge and rhythmic-delta patterns). A 4-s window at 1000 Hz gives 40 bins x 33 frames.
3. ``chains=True`` (the HMS solutions' LL, LP, RP, RL spectrograms): the power is averaged over the
   four bipolar channels of each chain of the double banana (LL: Fp1-F7 ... P7-O1, RL: Fp2-F8 ...
   P8-O2, LP: Fp1-F3 ... P3-O1, RP: Fp2-F4 ... P4-O2, in this project's channel order), giving a
   4-channel image; ``chains=False`` keeps one image channel per bipolar channel.
4. ``log(power + 1e-6)``, standardised per window and image channel (zero mean, unit variance).
5. ``timm.create_model(variant, pretrained=False, in_chans=4 or n_chans, num_classes=n_outputs)``
   (default ``mobilenetv3_small_050``, 0.57 M parameters): logits ``(batch, n_outputs)``.

Trained by the fine-tuning engine like M4CEA, with the KL-divergence loss on soft labels
(``model.name=hms_mobilenetv3``). No masking, no pretraining head.

References
----------
Howard A. et al., "Searching for MobileNetV3", ICCV 2019 (timm ``mobilenetv3_*``). Kaggle "HMS - Harmful
Brain Activity Classification" (2024), spectrogram-CNN solutions (LL, LP, RP, RL chain spectrograms).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from runtime.config import UsageError

__all__ = ["CHAINS", "HMSMobileNetV3"]

#: Channel indices of the four chains in the project's double banana (DESIGN.md section 4):
#: left temporal (LL), right temporal (RL), left parasagittal (LP), right parasagittal (RP).
CHAINS = {"LL": (0, 1, 2, 3), "RL": (4, 5, 6, 7), "LP": (8, 9, 10, 11), "RP": (12, 13, 14, 15)}


class HMSMobileNetV3(nn.Module):
    """MobileNetV3 on log spectrograms of a window (the HMS baseline; see the module docstring).

    Parameters
    ----------
    n_chans : int
        Bipolar channels of the input (16, the double banana, with ``chains=True``).
    n_patches, patch_samples : int
        The window is ``n_times = n_patches * patch_samples`` samples (the project's window keys).
    sfreq : float
        Sampling rate of the input in Hz.
    variant : str
        A timm MobileNetV3 name (``mobilenetv3_small_050``, ``mobilenetv3_large_100``...).
    chains : bool
        Average the spectrograms of each double-banana chain (4 image channels) or not (``n_chans``).
    win_s, hop_s : float
        STFT window and hop in s.
    fmin_hz, fmax_hz : float
        Frequency range of the image in Hz.
    drop_rate, drop_path_rate : float
        timm's classifier dropout and stochastic depth.
    head : {"classification"}
        The only head.
    n_outputs : int
        Number of classes.

    Raises
    ------
    ValueError
        On ``chains=True`` with ``n_chans != 16``, a window shorter than the STFT window, an empty
        frequency range, a head other than classification or a missing ``n_outputs``.
    """

    def __init__(
        self,
        n_chans: int = 16,
        n_patches: int = 20,
        patch_samples: int = 200,
        sfreq: float = 1000.0,
        variant: str = "mobilenetv3_small_050",
        chains: bool = True,
        win_s: float = 1.0,
        hop_s: float = 0.125,
        fmin_hz: float = 0.5,
        fmax_hz: float = 20.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head: str = "classification",
        n_outputs: int | None = None,
    ) -> None:
        super().__init__()
        if head != "classification" or not n_outputs:
            raise UsageError(
                f"Invalid value for the 'head' parameter: hms_mobilenetv3 has only a classification "
                f"head with n_outputs classes, but got head={head!r}, n_outputs={n_outputs!r}."
            )
        if chains and n_chans != 16:
            raise UsageError(
                f"Invalid value for the 'model.n_chans' parameter: chains=true needs the 16 channels "
                f"of the double banana, but got {n_chans}; set model.chains=false for other montages."
            )
        self.n_chans, self.n_patches, self.patch_samples = int(n_chans), int(n_patches), int(patch_samples)
        self.n_times = self.n_patches * self.patch_samples
        self.sfreq, self.chains, self.head_type = float(sfreq), bool(chains), head
        self.win_samples = round(win_s * sfreq)
        self.hop_samples = max(1, round(hop_s * sfreq))
        self.n_fft = 2 * self.win_samples
        if not 1 < self.win_samples <= self.n_times:
            raise UsageError(
                f"Invalid value for the 'win_s' parameter: {win_s} s is {self.win_samples} samples, "
                f"but a window holds {self.n_times}."
            )
        freqs = torch.fft.rfftfreq(self.n_fft, d=1.0 / self.sfreq)
        bins = torch.nonzero((freqs >= fmin_hz) & (freqs <= fmax_hz)).flatten()
        if bins.numel() == 0:
            raise UsageError(
                f"Invalid frequency range {fmin_hz}-{fmax_hz} Hz: no STFT bin of "
                f"{self.sfreq / self.n_fft:g} Hz lies in it."
            )
        self.register_buffer("stft_window", torch.hann_window(self.win_samples), persistent=False)
        self.bins = (int(bins[0]), int(bins[-1]) + 1)
        self.freqs_hz = freqs[self.bins[0] : self.bins[1]]
        in_chans = len(CHAINS) if self.chains else self.n_chans
        self.backbone = timm.create_model(
            variant,
            pretrained=False,
            in_chans=in_chans,
            num_classes=n_outputs,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised log-power spectrogram images of windows.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, n_times)

        Returns
        -------
        images : Tensor of float32, shape (batch, 4 or n_chans, n_freqs, n_frames)
            ``n_freqs`` bins from ``fmin_hz`` to ``fmax_hz`` (:attr:`freqs_hz`), ``n_frames = 1 + n_times //
            hop_samples``; each image channel zero mean and unit variance.
        """
        batch, n_chans, n_times = x.shape
        spec = torch.stft(
            x.float().reshape(batch * n_chans, n_times),
            n_fft=self.n_fft,
            hop_length=self.hop_samples,
            win_length=self.win_samples,
            window=self.stft_window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec[:, self.bins[0] : self.bins[1]].abs().square()
        power = power.reshape(batch, n_chans, *power.shape[1:])
        if self.chains:
            power = torch.stack([power[:, list(idx)].mean(dim=1) for idx in CHAINS.values()], dim=1)
        image = torch.log(power + 1e-6)
        mean = image.mean(dim=(2, 3), keepdim=True)
        std = image.std(dim=(2, 3), keepdim=True)
        return (image - mean) / (std + 1e-6)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN's feature map of the spectrogram images of ``x`` (batch, n_chans, n_times)."""
        return self.backbone.forward_features(self.spectrogram(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_outputs) from :meth:`forward_features`."""
        return self.backbone.forward_head(features)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, n_outputs) of windows ``x`` (batch, n_chans, n_times); ``mask`` must be None."""
        if mask is not None:
            raise ValueError("hms_mobilenetv3 does not mask tokens: call model(x).")
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The classification layer: timm's ``backbone.classifier`` (what a linear probe trains)."""
        return self.backbone.get_classifier()

    def reset_classifier(self, n_outputs: int) -> None:
        """A new classification layer of ``n_outputs`` classes."""
        self.backbone.reset_classifier(n_outputs)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer groups of the CNN (stem, blocks), prefixed for layer-wise lr decay."""
        groups = self.backbone.group_matcher(coarse=coarse)
        return {key: rf"^backbone\.(?:{pattern.removeprefix('^')})" for key, pattern in groups.items()}

    def no_weight_decay(self) -> set:
        """Parameter names without weight decay besides biases and norms (none)."""
        return set()
