"""Dataset adapters: public EEG datasets and private cohorts as one-command labelled inputs.

``python preprocess/preprocess_main.py --dataset NAME --input ROOT --output DIR --task TASK`` reads the
dataset's recordings, labels, subjects, montage and split through its adapter and writes a labelled
preprocessing output ready for fine-tuning (:func:`preprocess.datasets.prepare.prepare_dataset`).

Adapters (one module per dataset): ``chbmit``, ``helsinki_seizures`` and ``helsinki_artefacts``
(:mod:`.helsinki`), ``sleep_edf``, ``cork_hie``, ``tusz``, ``tuev``, ``tuar``, ``hms``, and for private
cohorts ``bids`` (:mod:`.cohort_bids`) and ``csv`` (:mod:`.cohort_csv`).
"""

from preprocess.datasets import (  # noqa: F401  (each module registers its adapter)
    chbmit,
    cohort_bids,
    cohort_csv,
    cork_hie,
    helsinki,
    hms,
    sleep_edf,
    tuar,
    tuev,
    tusz,
)
from preprocess.datasets.base import AnnotationError, DatasetAdapter, LayoutError, registered_adapters

__all__ = ["AnnotationError", "DatasetAdapter", "LayoutError", "get_adapter", "list_adapters"]


def list_adapters() -> list[str]:
    """Names of the registered dataset adapters, sorted."""
    return sorted(registered_adapters())


def get_adapter(name: str, **options) -> DatasetAdapter:
    """Make the adapter ``name`` with ``options``.

    Raises
    ------
    ValueError
        If ``name`` is not registered (the message lists the names), or an option is invalid.
    """
    adapters = registered_adapters()
    if name not in adapters:
        raise ValueError(
            f"Invalid value for the 'dataset' parameter. Allowed values are {sorted(adapters)}, "
            f"but got {name!r} instead."
        )
    return adapters[name](**options)
