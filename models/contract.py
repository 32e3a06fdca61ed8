"""What a model family expects of its input windows, declared in one place per family.

One preprocessed folder (the paper's preprocessing: 1000 Hz, double banana, microvolts) serves every model
family; a data loader reads a family's :class:`InputContract` (``models.get_input_contract(name)``) and
adapts the stored windows to it (resampling, scaling, channel order). The contract is data only: the
adapter (:class:`preprocess.adapt.WindowAdapter`) is applied by the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputContract"]


@dataclass(frozen=True)
class InputContract:
    """Input a model family expects: sampling rate, patching, scaling and channel names.

    Attributes
    ----------
    family : str
        Model family (``"m4cea"``, ``"labram"``...).
    sfreq : float
        Sampling rate of the model's input, in Hz.
    patch_samples : int
        Samples per patch (token) of one channel.
    max_patches : int
        Most patches per channel the model accepts (``n_times <= max_patches * patch_samples``).
    fixed_patches : bool
        True when the model needs exactly ``max_patches`` patches (its positional table is per
        channel-patch position), False when any count from 1 to ``max_patches`` works.
    uv_scale : float | None
        Factor applied to the signal in microvolts (LaBraM: 0.01, i.e. uV / 100); None when the model
        expects a per-window normalisation instead (see ``normalisation``).
    normalisation : str
        The scaling in words, as the family's code does it.
    channel_names : tuple of str | None
        Names the model can place (its channel-position table, upper case); None when channels are
        identified by their order only (a fixed montage).

    Examples
    --------
    >>> from models import get_input_contract
    >>> contract = get_input_contract("labram_base")
    >>> contract.sfreq, contract.patch_samples, contract.uv_scale
    (200.0, 200, 0.01)
    """

    family: str
    sfreq: float
    patch_samples: int
    max_patches: int
    fixed_patches: bool
    uv_scale: float | None
    normalisation: str
    channel_names: tuple | None = None

    @property
    def max_times(self):
        """Most samples per channel: ``max_patches * patch_samples``."""
        return self.max_patches * self.patch_samples

    @property
    def patch_s(self):
        """Duration of one patch in seconds."""
        return self.patch_samples / self.sfreq
