"""Named model sizes (M4CEA, LaBraM, VQ-NSP) and the one factory that builds them.

Sizes are sets of constructor arguments of their family's class (:class:`models.m4cea.M4CEA`,
:class:`models.labram.LaBraM`, :class:`models.labram.VQNSP`). Montage and sampling rate are part of the
configuration (``n_chans``, ``n_patches``, ``patch_samples``; LaBraM: ``ch_names``), not of the code: e.g.
200 Hz data with 1-s patches and 4-s windows is ``create_model("m4cea_base", patch_samples=200,
n_patches=4)``. Each family declares its input contract (:func:`get_input_contract`).
"""

from __future__ import annotations

import dataclasses
import inspect

from runtime.config import UsageError

from .contract import InputContract
from .hms import HMSMobileNetV3
from .labram import LABRAM_HEAD_TYPES, LABRAM_INPUT, LaBraM
from .m4cea import HEAD_TYPES, M4CEA
from .vqnsp import VQNSP
from .zoo import create_zoo_model, is_zoo_name, zoo_contract

__all__ = [
    "OVERRIDE_KEYS",
    "create_model",
    "create_model_from_config",
    "get_input_contract",
    "get_model_config",
    "list_models",
]

_MODEL_CONFIGS = {
    # The paper's model: 16 channels x 20 patches of 200 samples (4 s at 1000 Hz), 6.0 M parameters.
    "m4cea_base": dict(
        n_chans=16,
        n_patches=20,
        patch_samples=200,
        embed_dim=200,
        depth=12,
        num_heads=8,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
        tie=True,
    ),
    # Same input and temporal embedding as the base model, small transformer: tests and quickstart.
    "m4cea_tiny": dict(
        n_chans=16,
        n_patches=20,
        patch_samples=200,
        embed_dim=64,
        depth=2,
        num_heads=4,
        mlp_ratio=4.0,
        drop_path_rate=0.0,
        tie=True,
    ),
    # LaBraM-Base as released (labram-base.pth): 200 Hz, 1-s patches, width 200, 12 blocks of 10 heads,
    # qk-norm, layer scale 0.1, no qkv bias, vocabulary 8192; channels default to the double banana.
    "labram_base": dict(
        depth=12,
        num_heads=10,
        mlp_ratio=4.0,
        qkv_bias=False,
        qk_norm=True,
        init_values=0.1,
        drop_path_rate=0.1,
        vocab_size=8192,
    ),
    # Same input and embedding, small transformer and vocabulary: tests.
    "labram_tiny": dict(
        depth=2,
        num_heads=4,
        mlp_ratio=1.0,
        qkv_bias=False,
        qk_norm=True,
        init_values=0.1,
        drop_path_rate=0.0,
        vocab_size=64,
    ),
    # The released tokenizer (vqnsp.pth): encoder 12 blocks, decoder 3, codebook 8192 x 64.
    "vqnsp_base": dict(depth=12, decoder_depth=3, num_heads=10, n_codes=8192, code_dim=64, kmeans_init=True),
    "vqnsp_tiny": dict(depth=1, decoder_depth=1, num_heads=4, n_codes=64, code_dim=16, kmeans_init=True),
    # The HMS seed's baseline (models/hms.py): timm MobileNetV3-Small 0.5 on 0.5-20 Hz log spectrograms of
    # the four double-banana chains of the project's windows (16 x 4000 at 1000 Hz), 0.57 M parameters.
    "hms_mobilenetv3": dict(
        n_chans=16,
        n_patches=20,
        patch_samples=200,
        sfreq=1000.0,
        variant="mobilenetv3_small_050",
        chains=True,
        win_s=1.0,
        hop_s=0.125,
        fmin_hz=0.5,
        fmax_hz=20.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
    ),
}

_HEAD_ARGS = ("head", "n_outputs")
# family of each name: (class, heads it offers, whether the class takes head/n_outputs)
_FAMILIES = {
    "m4cea": (M4CEA, HEAD_TYPES, True),
    "labram": (LaBraM, LABRAM_HEAD_TYPES, True),
    "vqnsp": (VQNSP, ("pretrain",), False),
    "hms": (HMSMobileNetV3, ("classification",), True),
}
_INTERNAL_ARGS = ("self", "code_dim") + _HEAD_ARGS


def _family(name):
    return _FAMILIES[name.split("_")[0]]


def _allowed_overrides(name):
    cls = _family(name)[0]
    internal = _INTERNAL_ARGS if cls is LaBraM else ("self",) + _HEAD_ARGS
    return tuple(arg for arg in inspect.signature(cls.__init__).parameters if arg not in internal)


#: Keys a config's ``model`` section may set to override an M4CEA size (null keeps the size's value);
#: other families take their class's arguments (see :func:`create_model_from_config`).
OVERRIDE_KEYS = _allowed_overrides("m4cea_base")


def list_models():
    """Names of the registered model sizes.

    Returns
    -------
    names : list of str
        Sorted.
    """
    return sorted(_MODEL_CONFIGS)


def _check_name(name):
    if not isinstance(name, str) or name not in _MODEL_CONFIGS:
        raise UsageError(
            f"Invalid value for the 'name' parameter. Allowed values are {list_models()}, "
            f"but got {name!r} instead."
        )


def get_model_config(name):
    """Arguments of a registered size.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.

    Returns
    -------
    config : dict
        A copy of the keyword arguments of the family's class (:class:`~models.m4cea.M4CEA`,
        :class:`~models.labram.LaBraM` or :class:`~models.labram.VQNSP`), without head settings.

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    """
    _check_name(name)
    return dict(_MODEL_CONFIGS[name])


def get_input_contract(name):
    """Input contract of a registered size: what the data loader must feed it.

    Parameters
    ----------
    name : str | mapping
        A name from :func:`list_models` or ``"braindecode.<Class>"`` (:func:`models.zoo.zoo_contract`),
        or a config's ``model`` section (``name`` plus size overrides):
        its non-null ``n_patches``/``patch_samples`` (M4CEA) or ``max_patches``/``patch_samples``
        (LaBraM, VQ-NSP), or ``zoo_sfreq`` (braindecode), then replace the registered patching or rate.

    Returns
    -------
    contract : models.contract.InputContract
        M4CEA: 1000 Hz, 200-sample patches, exactly ``n_patches`` of them (20), each channel divided by its
        95th percentile, channels by position; hms_mobilenetv3 the same windows. LaBraM and VQ-NSP:
        :data:`models.labram.LABRAM_INPUT`
        (200 Hz, 200-sample patches, at most 16, uV / 100, channels by 10-20 name).

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    """
    overrides = {}
    if not isinstance(name, str) and hasattr(name, "get"):
        overrides = {k: v for k, v in name.items() if v is not None}
        name = name.get("name")
    if is_zoo_name(name):  # braindecode.<Class>: models/zoo.py's table at the rate the model is built for
        return zoo_contract(name, sfreq=overrides.get("zoo_sfreq"))
    _check_name(name)
    patching = {k: overrides[k] for k in ("n_patches", "patch_samples") if k in overrides}
    config = {**_MODEL_CONFIGS[name], **patching}
    if _family(name)[0] is HMSMobileNetV3:
        return InputContract(
            family="hms",
            sfreq=config["sfreq"],
            patch_samples=config["patch_samples"],
            max_patches=config["n_patches"],
            fixed_patches=True,
            uv_scale=None,
            normalisation="each channel divided by (95th percentile of |x| over the window + 1e-8), in the "
            "loader; log spectrograms standardised in the model",
            channel_names=None,
        )
    if _family(name)[0] is not M4CEA:
        patching = {k: overrides[k] for k in ("max_patches", "patch_samples") if k in overrides}
        return dataclasses.replace(LABRAM_INPUT, **patching) if patching else LABRAM_INPUT
    return InputContract(
        family="m4cea",
        sfreq=1000.0,
        patch_samples=config["patch_samples"],
        max_patches=config["n_patches"],
        fixed_patches=True,
        uv_scale=None,
        normalisation="each channel divided by (95th percentile of |x| over the window + "
        "1e-8), in the loader",
        channel_names=None,
    )


def create_model(name, head="pretrain", n_outputs=None, **overrides):
    """Build a registered size.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`: ``"m4cea_base"`` (the paper's model), ``"m4cea_tiny"``,
        ``"labram_base"`` (LaBraM-Base), ``"labram_tiny"``, ``"vqnsp_base"`` (LaBraM's tokenizer),
        ``"vqnsp_tiny"``, ``"hms_mobilenetv3"`` (the HMS seed's spectrogram CNN; classification only); or
        ``"braindecode.<Class>"``: a braindecode model
        (:func:`models.zoo.create_zoo_model`, whose arguments the overrides are; classification only).
    head : {"pretrain", "classification"}
        M4CEA: ``"pretrain"``: ``model(x, mask)`` returns (pred_magnitude, pred_phase), each
        (batch, n_tokens, patch_samples // 2 + 1). LaBraM: ``"pretrain"``: ``model(x, mask)`` returns
        the code logits of the masked tokens and of the complementary mask's tokens (masked EEG
        modelling). Both: ``"classification"``: ``model(x)`` returns logits (batch, n_outputs).
        VQ-NSP: only ``"pretrain"`` (the tokenizer is trained in pretraining; ``model(x)`` returns its
        losses, ``model.tokenize(x)`` the codes).
    n_outputs : int | None
        Number of classes; required for ``head="classification"``, None for ``head="pretrain"``.
    **overrides
        Any argument of the family's class replacing the registered value, e.g. ``depth=3``,
        ``drop_path_rate=0.0``, ``n_chans=8``, ``tie=False`` (M4CEA); ``ch_names=[...]`` (LaBraM, VQ-NSP).

    Returns
    -------
    model : models.m4cea.M4CEA | models.labram.LaBraM | models.labram.VQNSP
        Freshly initialised (torch's default generator), in training mode.

    Raises
    ------
    ValueError
        If ``name`` is not registered, ``head`` is unknown, ``n_outputs`` does not fit ``head``, an
        override is not an argument of the model, or a value is invalid.
    """
    if is_zoo_name(name):  # braindecode.<Class> (models/zoo.py): overrides are create_zoo_model's arguments
        if head != "classification":
            raise ValueError(f"{name!r} has only a classification head, but got head={head!r}.")
        return create_zoo_model(name, n_outputs, **overrides)
    _check_name(name)
    cls, heads, takes_head = _family(name)
    if head not in heads:
        raise ValueError(
            f"Invalid value for the 'head' parameter. Allowed values for {name!r} are {heads}, "
            f"but got {head!r} instead."
        )
    if head == "classification" and n_outputs is None:
        raise ValueError(
            "Invalid value for the 'n_outputs' parameter. head='classification' needs the "
            "number of classes, but got None instead."
        )
    allowed = _allowed_overrides(name)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise UsageError(
            f"Unknown override(s) {unknown} for model {name!r}. Allowed overrides are {list(allowed)}."
        )
    config = {**_MODEL_CONFIGS[name], **overrides}
    if not takes_head:
        if n_outputs is not None:
            raise ValueError(
                f"Invalid value for the 'n_outputs' parameter. {name!r} has no classification "
                f"head, but got {n_outputs!r} instead."
            )
        return cls(**config)
    return cls(**config, head=head, n_outputs=n_outputs)


def create_model_from_config(model_config, head="pretrain", n_outputs=None):
    """Build the model a config's ``model`` section names, with its non-null size overrides.

    Parameters
    ----------
    model_config : mapping
        ``name`` (a registered size) and any argument of its family's class (M4CEA: :data:`OVERRIDE_KEYS`;
        null keeps the registered value); other keys (``pretrained``...) are ignored.
    head, n_outputs
        As for :func:`create_model`.

    Returns
    -------
    model : M4CEA | LaBraM | VQNSP

    Raises
    ------
    ValueError
        If the name is not registered or an override is invalid.
    """
    name = model_config["name"]
    _check_name(name)
    overrides = {k: model_config[k] for k in _allowed_overrides(name) if model_config.get(k) is not None}
    return create_model(name, head=head, n_outputs=n_outputs, **overrides)
