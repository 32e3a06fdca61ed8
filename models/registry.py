"""Named M4CEA sizes and the one factory that builds them.

Sizes are sets of :class:`models.m4cea.M4CEA` arguments. Montage and sampling rate are part of the
configuration (``n_chans``, ``n_patches``, ``patch_samples``), not of the code: e.g. 200 Hz data with
1-s patches and 4-s windows is ``create_model("m4cea_base", patch_samples=200, n_patches=4)``.
"""

from __future__ import annotations

import inspect

from runtime.config import UsageError

from .m4cea import HEAD_TYPES, M4CEA

__all__ = ["OVERRIDE_KEYS", "create_model", "create_model_from_config", "get_model_config", "list_models"]

_MODEL_CONFIGS = {
    # The paper's model: 16 channels x 20 patches of 200 samples (4 s at 1000 Hz), 6.0 M parameters.
    "m4cea_base": dict(n_chans=16, n_patches=20, patch_samples=200, embed_dim=200, depth=12, num_heads=8,
                       mlp_ratio=4.0, drop_path_rate=0.1, tie=True),
    # Same input and temporal embedding as the base model, small transformer: tests and quickstart.
    "m4cea_tiny": dict(n_chans=16, n_patches=20, patch_samples=200, embed_dim=64, depth=2, num_heads=4,
                       mlp_ratio=4.0, drop_path_rate=0.0, tie=True),
}

_HEAD_ARGS = ("head", "n_outputs")
_ALLOWED_OVERRIDES = tuple(name for name in inspect.signature(M4CEA.__init__).parameters
                           if name not in ("self",) + _HEAD_ARGS)

#: Keys a config's ``model`` section may set to override a registered size (null keeps the size's value).
OVERRIDE_KEYS = _ALLOWED_OVERRIDES


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
        raise UsageError(f"Invalid value for the 'name' parameter. Allowed values are {list_models()}, "
                         f"but got {name!r} instead.")


def get_model_config(name):
    """Arguments of a registered size.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.

    Returns
    -------
    config : dict
        A copy of the :class:`~models.m4cea.M4CEA` keyword arguments (without head settings).

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    """
    _check_name(name)
    return dict(_MODEL_CONFIGS[name])


def create_model(name, head="pretrain", n_outputs=None, **overrides):
    """Build a registered M4CEA size.

    Parameters
    ----------
    name : str
        A name from :func:`list_models` (``"m4cea_base"``: the paper's model; ``"m4cea_tiny"``).
    head : {"pretrain", "classification"}
        ``"pretrain"``: ``model(x, mask)`` returns (pred_magnitude, pred_phase), each
        (batch, n_tokens, patch_samples // 2 + 1). ``"classification"``: ``model(x)`` returns
        logits (batch, n_outputs).
    n_outputs : int | None
        Number of classes; required for ``head="classification"``, None for ``head="pretrain"``.
    **overrides
        Any :class:`~models.m4cea.M4CEA` argument replacing the registered value, e.g. ``depth=3``,
        ``drop_path_rate=0.0``, ``n_chans=8``, ``tie=False``.

    Returns
    -------
    model : models.m4cea.M4CEA
        Freshly initialised (torch's default generator), in training mode.

    Raises
    ------
    ValueError
        If ``name`` is not registered, ``head`` is unknown, ``n_outputs`` does not fit ``head``, an
        override is not an argument of the model, or a value is invalid.
    """
    _check_name(name)
    if head not in HEAD_TYPES:
        raise ValueError(f"Invalid value for the 'head' parameter. Allowed values are {HEAD_TYPES}, "
                         f"but got {head!r} instead.")
    if head == "classification" and n_outputs is None:
        raise ValueError("Invalid value for the 'n_outputs' parameter. head='classification' needs the "
                         "number of classes, but got None instead.")
    unknown = sorted(set(overrides) - set(_ALLOWED_OVERRIDES))
    if unknown:
        raise UsageError(f"Unknown override(s) {unknown} for model {name!r}. Allowed overrides are "
                         f"{list(_ALLOWED_OVERRIDES)}.")
    config = {**_MODEL_CONFIGS[name], **overrides}
    return M4CEA(**config, head=head, n_outputs=n_outputs)


def create_model_from_config(model_config, head="pretrain", n_outputs=None):
    """Build the model a config's ``model`` section names, with its non-null size overrides.

    Parameters
    ----------
    model_config : mapping
        ``name`` (a registered size) and any of :data:`OVERRIDE_KEYS` (null keeps the registered value);
        other keys (``pretrained``...) are ignored.
    head, n_outputs
        As for :func:`create_model`.

    Returns
    -------
    model : M4CEA

    Raises
    ------
    ValueError
        If the name is not registered or an override is invalid.
    """
    overrides = {k: model_config[k] for k in OVERRIDE_KEYS if model_config.get(k) is not None}
    return create_model(model_config["name"], head=head, n_outputs=n_outputs, **overrides)
