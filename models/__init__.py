"""M4CEA and LaBraM models: ``nn.Module``s, a registry of named sizes and the official-checkpoint loader.

>>> from models import create_model
>>> model = create_model("m4cea_base", head="pretrain")            # model(x, mask) -> (magnitude, phase)
>>> clf = create_model("m4cea_base", head="classification", n_outputs=4)   # clf(x) -> logits
>>> labram = create_model("labram_base", head="classification", n_outputs=4, ch_names=["FP1", "FP2"])
>>> tokenizer = create_model("vqnsp_base")                          # tokenizer.tokenize(x) -> codes
"""

from .checkpoint import (
    LoadResult,
    convert_official_state_dict,
    load_official_state_dict,
    read_official_checkpoint,
)
from .contract import InputContract
from .labram import LaBraM
from .labram_channels import DOUBLE_BANANA, LABRAM_INPUT, STANDARD_1020, channel_positions
from .m4cea import HEAD_TYPES, M4CEA, TemporalEmbedding, patch_spectrum, temporal_feature_dim
from .registry import (
    OVERRIDE_KEYS,
    create_model,
    create_model_from_config,
    get_input_contract,
    get_model_config,
    list_models,
)
from .vqnsp import VQNSP, codebook_usage, spectrum_targets

__all__ = [
    "DOUBLE_BANANA",
    "HEAD_TYPES",
    "LABRAM_INPUT",
    "STANDARD_1020",
    "VQNSP",
    "InputContract",
    "LaBraM",
    "channel_positions",
    "codebook_usage",
    "get_input_contract",
    "read_official_checkpoint",
    "spectrum_targets",
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
