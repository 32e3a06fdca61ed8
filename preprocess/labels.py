"""The labels a preprocessing run accepts: ``labels.classes``, by default the task vocabulary.

``configs/preprocess/m4cea.yaml`` sets ``labels.classes: null``: every label of the eight tasks
(:func:`tasks.label_vocabulary`, read from ``configs/finetune/*.yaml``), so preprocessing never keeps its
own copy of the class names. A cohort lists its own labels with ``--set labels.classes=[...]``.
"""

from __future__ import annotations

import copy

from tasks import label_vocabulary

__all__ = ["resolve_label_classes"]


def resolve_label_classes(config: dict) -> dict:
    """A resolved preprocessing config whose ``labels.classes`` is a list of label names.

    Parameters
    ----------
    config : dict
        A preprocessing config (``configs/preprocess/m4cea.yaml`` and overrides).

    Returns
    -------
    config : dict
        ``config`` itself when ``labels.classes`` is set; otherwise a copy with ``labels.classes`` the
        task vocabulary (:func:`tasks.label_vocabulary`), so the saved ``config.yaml`` names every label.

    Raises
    ------
    runtime.config.UsageError
        If ``labels.classes`` is neither null nor a list of non-empty names.
    """
    classes = config["labels"]["classes"]
    if classes is None:
        config = copy.deepcopy(config)
        config["labels"]["classes"] = list(label_vocabulary())
        return config
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) and c for c in classes):
        raise ValueError(
            f"Invalid value for the 'labels.classes' parameter: expected null (every task's labels) or a "
            f"list of label names, but got {classes!r} instead."
        )
    return config
