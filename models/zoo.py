"""braindecode's models as baselines: ``model.name=braindecode.<Class>`` builds any of them for a task.

Each model keeps its own input contract (:data:`ZOO_DEFAULTS`: sampling rate, scaling, patch size, least
channels and samples), applied to the stored windows by the same loader adapter as LaBraM
(:class:`preprocess.adapt.WindowAdapter`), so one preprocessed folder, its splits, seeds, metrics and tables
serve every model. A class not in the table gets :data:`GENERIC_DEFAULTS` (200 Hz, uV / 100); a config may
override the rate (``model.zoo_sfreq``), which :func:`models.get_input_contract` of the config's ``model``
section applies as the built model's :attr:`ZooModel.contract` does (what fine-tuning and prediction adapt
windows to); :func:`zoo_contract` also takes a scaling.

Channel information (``chs_info``, what braindecode's foundation models use to place channels) is built
from the stored channel names (:func:`chs_info_from_names`): a referential name (``"Fp1"``) gets its
standard 10-20 position (MNE's ``standard_1020`` montage); a bipolar pair (``"FP1-F7"``) is named after the
10-10 electrode at the pair's midpoint (:data:`models.labram_channels.BIPOLAR_MIDPOINTS`, e.g. ``"AF7"``) and
placed at the mean of the two electrodes' positions; a name MNE cannot place gets no position (NaN).

References
----------
Schirrmeister et al., "Deep learning with convolutional neural networks for EEG decoding and
visualization", Hum. Brain Mapp. 2017 (braindecode); Aristimunha et al., braindecode 1.x model zoo
(github.com/braindecode/braindecode).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import replace

import numpy as np
import torch

from runtime.config import UsageError

from .contract import InputContract
from .labram_channels import BIPOLAR_MIDPOINTS

__all__ = [
    "GENERIC_DEFAULTS",
    "ZOO_DEFAULTS",
    "ZOO_PREFIX",
    "ZooModel",
    "chs_info_from_names",
    "create_zoo_model",
    "is_zoo_name",
    "zoo_contract",
]

#: Prefix of the model names served by braindecode.
ZOO_PREFIX = "braindecode."

_MANY = 10**6  # "no upper bound" on patches: the model is built for the adapted window length

# Per class: sfreq (Hz), uv_scale (None: the per-channel 95th-percentile normalisation), patch_samples
# (the adapted window must be a multiple), min_chans, min_times (at sfreq), and small default arguments.
#: Input contract defaults of braindecode classes (upstream papers' rates and scalings).
ZOO_DEFAULTS = {
    # Lawhern et al. 2018: 128 Hz; trained from scratch, per-channel normalised input.
    "EEGNet": dict(sfreq=128.0, uv_scale=None, patch_samples=1, min_chans=1, min_times=128),
    # Schirrmeister et al. 2017: 250 Hz (BCI IV 2a).
    "ShallowFBCSPNet": dict(sfreq=250.0, uv_scale=None, patch_samples=1, min_chans=1, min_times=250),
    "Deep4Net": dict(sfreq=250.0, uv_scale=None, patch_samples=1, min_chans=1, min_times=440),
    # Yang et al. 2023: 200 Hz, each channel divided by its 95th percentile of |x|.
    "BIOT": dict(sfreq=200.0, uv_scale=None, patch_samples=1, min_chans=1, min_times=200),
    # Wang et al. 2025: 200 Hz, 1-s patches, units of 100 uV.
    "CBraMod": dict(sfreq=200.0, uv_scale=0.01, patch_samples=200, min_chans=1, min_times=200),
    # Jiang et al. 2024: 200 Hz, 1-s patches, uV / 100.
    "Labram": dict(sfreq=200.0, uv_scale=0.01, patch_samples=200, min_chans=1, min_times=200),
    # Wang et al. 2024: 256 Hz, 64-sample patches, millivolts.
    "EEGPT": dict(sfreq=256.0, uv_scale=0.001, patch_samples=64, min_chans=1, min_times=256),
}

#: Defaults of a braindecode class missing from :data:`ZOO_DEFAULTS`.
GENERIC_DEFAULTS = dict(sfreq=200.0, uv_scale=0.01, patch_samples=1, min_chans=1, min_times=1)

#: The signal arguments every zoo model must take (braindecode's EEGModuleMixin).
_SIGNAL_ARGS = ("n_chans", "n_outputs", "n_times")


def is_zoo_name(name) -> bool:
    """True for ``"braindecode.<Class>"`` names."""
    return isinstance(name, str) and name.startswith(ZOO_PREFIX)


def _zoo_class(name):
    """The braindecode class of ``braindecode.<Class>``; a UsageError naming the setting otherwise."""
    class_name = name[len(ZOO_PREFIX) :]
    try:
        import braindecode.models as bd_models
    except ImportError as err:  # pragma: no cover - requirements.txt installs it
        raise UsageError(
            f"model.name={name!r} needs braindecode (pip install 'braindecode>=1.8'): {err}"
        ) from None
    cls = getattr(bd_models, class_name, None)
    if not inspect.isclass(cls) or not issubclass(cls, torch.nn.Module):
        raise UsageError(
            f"Invalid value for model.name: {name!r} is not a braindecode model class "
            f"(e.g. braindecode.EEGNet, braindecode.BIOT, braindecode.CBraMod)."
        )
    params = inspect.signature(cls.__init__).parameters
    missing = [arg for arg in _SIGNAL_ARGS if arg not in params]
    if missing:
        raise UsageError(
            f"model.name={name!r}: braindecode.{class_name} does not take the standard signal arguments "
            f"{missing}, so it cannot be built for a task; choose another model."
        )
    return cls


def zoo_contract(name, sfreq=None, uv_scale="default"):
    """Input contract of a braindecode model.

    Parameters
    ----------
    name : str
        ``"braindecode.<Class>"``.
    sfreq : float | None
        Overrides the table's sampling rate (Hz), ``model.zoo_sfreq``.
    uv_scale : float | None | "default"
        Overrides the table's scaling (``model.zoo_uv_scale``; None: per-channel 95th percentile).

    Returns
    -------
    contract : InputContract
        ``family`` is the name; ``fixed_patches`` False with no practical upper bound: the model is built
        for the adapted window length.

    Raises
    ------
    ValueError
        If the class is not a braindecode model taking the standard signal arguments.
    """
    _zoo_class(name)
    entry = dict(ZOO_DEFAULTS.get(name[len(ZOO_PREFIX) :], GENERIC_DEFAULTS))
    if sfreq is not None:
        entry["sfreq"] = float(sfreq)
    if uv_scale != "default":
        entry["uv_scale"] = uv_scale
    normalisation = (
        "each channel divided by (95th percentile of |x| over the window + 1e-8), in the loader"
        if entry["uv_scale"] is None
        else f"microvolts x {entry['uv_scale']:g}"
    )
    return InputContract(
        family=name,
        sfreq=float(entry["sfreq"]),
        patch_samples=int(entry["patch_samples"]),
        max_patches=_MANY,
        fixed_patches=False,
        uv_scale=entry["uv_scale"],
        normalisation=normalisation,
        channel_names=None,
    )


@functools.lru_cache(maxsize=1)
def _electrode_positions():
    import mne

    with warnings.catch_warnings():  # MNE >= 1.13 renames the montage (same positions)
        warnings.simplefilter("ignore", FutureWarning)
        montage = mne.channels.make_standard_montage("standard_1020")
    return {k.upper(): np.asarray(v, dtype=float) for k, v in montage.get_positions()["ch_pos"].items()}


def chs_info_from_names(ch_names):
    """braindecode's ``chs_info`` for stored channel names (referential or bipolar pairs).

    Parameters
    ----------
    ch_names : sequence of str
        The stored channel names, e.g. the double banana's ``"FP1-F7"``...

    Returns
    -------
    chs_info : list of dict
        One per channel, as in ``mne.Info["chs"]``: ``ch_name`` (a referential name as given; a bipolar
        pair: the 10-10 electrode at its midpoint when :data:`~models.labram_channels.BIPOLAR_MIDPOINTS`
        lists it, else the pair's name) and ``loc`` (12 floats; the first three the position in m: the
        electrode's in MNE's ``standard_1020``, or the mean of the pair's two electrodes; NaN when MNE
        cannot place it).
    """
    positions = _electrode_positions()
    chs_info = []
    for name in ch_names:
        upper = str(name).upper()
        parts = upper.split("-")
        loc = np.full(12, np.nan)
        if len(parts) == 2 and all(p in positions for p in parts):
            loc[:3] = (positions[parts[0]] + positions[parts[1]]) / 2
            label = BIPOLAR_MIDPOINTS.get(upper, str(name))
        else:
            label = str(name)
            if upper in positions:
                loc[:3] = positions[upper]
        chs_info.append({"ch_name": label, "loc": loc, "kind": "eeg"})
    return chs_info


class ZooModel(torch.nn.Module):
    """A braindecode model with the attributes the fine-tuning code reads.

    ``model(x)`` with ``x`` (batch, n_chans, n_times) returns logits (batch, n_outputs). The classification
    layer is braindecode's ``final_layer`` (:meth:`get_classifier`, what linear probing and LoRA keep
    trainable).

    Attributes
    ----------
    model : torch.nn.Module
        The braindecode model.
    n_chans, n_times : int
    sfreq : float
    contract : InputContract
        The input contract the model is built for (the table's, with the run's overrides).
    """

    has_layers = False  # no group_matcher: layer-wise lr decay does not apply

    def __init__(self, model, n_chans, n_times, contract):
        super().__init__()
        self.model = model
        self.n_chans, self.n_times, self.sfreq = int(n_chans), int(n_times), float(contract.sfreq)
        self.contract = contract

    def forward(self, x):
        return self.model(x)

    def get_classifier(self):
        """The classification layer: braindecode's ``final_layer`` (timm's surface)."""
        return self.model.final_layer


def create_zoo_model(
    name, n_outputs, *, n_chans, sfreq_in, n_times_in, ch_names=None, sfreq=None, uv_scale="default", **kwargs
):
    """Build ``braindecode.<Class>`` for windows of a preprocessed folder.

    Parameters
    ----------
    name : str
        ``"braindecode.<Class>"`` (EEGNet, ShallowFBCSPNet, Deep4Net, BIOT, CBraMod, EEGPT, Labram...).
    n_outputs : int
        Number of classes.
    n_chans : int
        Channels of the stored windows.
    sfreq_in : float
        Sampling rate of the stored windows (Hz).
    n_times_in : int
        Samples per stored window.
    ch_names : sequence of str | None
        Stored channel names (``chs_info`` for models that place channels); None: none given.
    sfreq, uv_scale
        Contract overrides (:func:`zoo_contract`).
    **kwargs
        Further arguments of the class (``n_layer=2``...).

    Returns
    -------
    model : ZooModel
        Built for ``n_times = n_times_in * sfreq / sfreq_in`` samples.

    Raises
    ------
    ValueError
        If the class is unknown or lacks the signal arguments, the montage has fewer channels or the
        window fewer samples than the model needs (the message names what it needs), or an argument is
        invalid (braindecode's message, naming the model).
    """
    cls = _zoo_class(name)
    contract = zoo_contract(name, sfreq=sfreq, uv_scale=uv_scale)
    entry = ZOO_DEFAULTS.get(name[len(ZOO_PREFIX) :], GENERIC_DEFAULTS)
    n_times = n_times_in * contract.sfreq / float(sfreq_in)
    if abs(n_times - round(n_times)) > 1e-6:
        raise UsageError(
            f"Windows of {n_times_in} samples at {sfreq_in:g} Hz give no whole number of samples at "
            f"{contract.sfreq:g} Hz, the rate of {name}: choose a window_s that does, or set model.zoo_sfreq."
        )
    n_times = int(round(n_times))
    if n_chans < entry["min_chans"]:
        raise UsageError(
            f"{name} needs at least {entry['min_chans']} channels, but the montage has {n_chans}."
        )
    if n_times < entry["min_times"] or n_times % contract.patch_samples:
        raise UsageError(
            f"{name} needs windows of at least {entry['min_times']} samples at {contract.sfreq:g} Hz, in "
            f"whole patches of {contract.patch_samples} samples, but the windows give {n_times}: preprocess "
            f"with another window_s (--set window_s=...)."
        )
    params = inspect.signature(cls.__init__).parameters
    args = dict(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, **kwargs)
    if "sfreq" in params:
        args["sfreq"] = contract.sfreq
    if "chs_info" in params and ch_names is not None:
        if len(ch_names) != n_chans:
            raise UsageError(f"{name}: {len(ch_names)} channel names for {n_chans} channels.")
        args["chs_info"] = chs_info_from_names(ch_names)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UsageError(
            f"Unknown argument(s) {unknown} for {name}; it takes {sorted(set(params) - {'self'})}."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # braindecode's notes on inferred arguments
            module = cls(**args)
            with torch.no_grad():  # refuse now what the montage cannot feed, not in the first batch
                module.eval()(torch.zeros(2, n_chans, n_times))
            module.train()
    except (ValueError, AssertionError, RuntimeError, KeyError) as err:
        raise UsageError(
            f"{name} cannot take {n_chans} channels x {n_times} samples at {contract.sfreq:g} Hz: {err}"
        ) from None
    return ZooModel(module, n_chans, n_times, replace(contract))
