"""M4CEA models: ``nn.Module``s, a registry of named sizes and the official-checkpoint loader.

>>> from models import create_model
>>> model = create_model("m4cea_base", head="pretrain")            # model(x, mask) -> (magnitude, phase)
>>> clf = create_model("m4cea_base", head="classification", n_outputs=4)   # clf(x) -> logits
"""

from .checkpoint import LoadResult, convert_official_state_dict, load_official_state_dict
from .m4cea import HEAD_TYPES, M4CEA, TemporalEmbedding, patch_spectrum, temporal_feature_dim
from .registry import OVERRIDE_KEYS, create_model, create_model_from_config, get_model_config, list_models

__all__ = [
    "HEAD_TYPES",
    "OVERRIDE_KEYS",
    "LoadResult",
    "M4CEA",
    "TemporalEmbedding",
    "convert_official_state_dict",
    "create_model",
    "create_model_from_config",
    "get_model_config",
    "list_models",
    "load_official_state_dict",
    "patch_spectrum",
    "temporal_feature_dim",
]
