"""LaBraM family: the NeuralTransformer (classification / masked EEG modelling) and the VQ-NSP tokenizer.

Our implementation of the models of Jiang, Zhao, Lu, "Large Brain Model for Learning Generic
Representations with Tremendous EEG Data in BCI", ICLR 2024 (official code github 935963004/LaBraM,
``modeling_finetune.py``, ``modeling_pretrain.py``, ``modeling_vqnsp.py``, ``norm_ema_quantizer.py``),
computing the same numbers from the same state dicts: the parameter names and shapes are the official
ones, so ``model.state_dict()`` of :class:`LaBraM` (classification) and :class:`VQNSP` has exactly the
keys of the official models, and the masked-modelling model those of the official ``student`` (see
:func:`models.checkpoint.load_official_state_dict`).

Input: ``x`` of shape (batch, n_chans, n_times) at 200 Hz in uV / 100, ``n_times`` a multiple of 200
(1-s patches) and at most 16 patches; channels are placed through the official 10-20 list
(:data:`STANDARD_1020`, :func:`channel_positions`). Tokens are channel-major: token
``i = channel * n_patches + patch``; a CLS token is prepended inside the transformer.

Official behaviours reproduced because they change numbers:

- the CLS token's position embedding: row 0 of the table in classification, but in masked EEG modelling
  the official code prepends the position row of the *first channel* (``pos_embed[:, 0:1]`` is taken
  from the already expanded channel table), so row 0 gets no gradient in pretraining;
- the VQ-NSP targets are the full 200-bin FFT amplitude and phase of each patch, each standardised per
  sample over all channels, patches and bins (unbiased std), and the commitment loss is
  ``mse(z_q.detach(), z)`` with beta 1 (no codebook loss: the codebook follows an EMA);
- the masked-modelling forward is symmetric: the logits of the masked tokens and, from a second pass
  with the complementary mask, of the other tokens.

Deliberate differences (no effect on the reference numbers): the two symmetric passes run as one batch;
the quantizer always computes in float32 (the official one runs under the caller's autocast when
tokenizing for pretraining); the code-usage statistic and k-means initialisation are updated only by
:meth:`VQNSP.forward`, never by :meth:`VQNSP.tokenize` / :meth:`VQNSP.reconstruct`; a one-patch input
works in the decoder (the official decoder mistakes it for its patch size); the masked-modelling
``lm_head`` bias starts at 0 (official: PyTorch's default uniform init); the k-means initialisation is
broadcast from rank 0 under DDP (official: each rank its own until buffers are synchronised).

References
----------
.. [1] Jiang, Zhao, Lu, "Large Brain Model for Learning Generic Representations with Tremendous EEG Data
   in BCI", ICLR 2024. https://github.com/935963004/LaBraM
.. [2] Peng et al., "BEiT v2: Masked Image Modeling with Vector-Quantized Visual Tokenizers", 2022
   (the norm-EMA quantizer). https://github.com/microsoft/unilm/tree/master/beitv2
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from .contract import InputContract
from .m4cea import TemporalEmbedding, temporal_feature_dim

__all__ = [
    "BIPOLAR_MIDPOINTS",
    "DOUBLE_BANANA",
    "LABRAM_HEAD_TYPES",
    "LABRAM_INPUT",
    "STANDARD_1020",
    "LaBraM",
    "VQNSP",
    "VQNSPLosses",
    "channel_positions",
    "codebook_usage",
    "spectrum_targets",
]

LABRAM_HEAD_TYPES = ("pretrain", "classification")

# The official channel list (utils.standard_1020): channel ``name`` uses row ``index(name) + 1`` of the
# position table (row 0 is the CLS token). The table has 129 rows, so the last 8 names (bipolar pairs)
# have no row.
# fmt: off
STANDARD_1020 = (
    "FP1", "FPZ", "FP2",
    "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6", "AF8", "AF10",
    "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10",
    "FT9", "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T9", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8", "T10",
    "TP9", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "TP10",
    "P9", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "P10",
    "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4", "PO6", "PO8", "PO10",
    "O1", "OZ", "O2", "O9", "CB1", "CB2",
    "IZ", "O10", "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2",
    "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8",
    "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8",
    "T1", "T2", "FTT9h", "TTP7h", "TPP9h", "FTT10h", "TPP8h", "TPP10h",
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
    "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4", "C4-P4", "P4-O2",
)
# fmt: on
_N_POSITION_ROWS = 129  # CLS + 128 channels: the official table's size
_N_TIME_ROWS = 16  # the official time table: at most 16 patches (16 s at 200 Hz)
_LOOKUP = {name.upper(): index + 1 for index, name in enumerate(STANDARD_1020)}

#: The project's canonical montage (DESIGN.md section 4), the default channel set of the registered sizes.
DOUBLE_BANANA = (
    "FP1-F7",
    "F7-T7",
    "T7-P7",
    "P7-O1",
    "FP2-F8",
    "F8-T8",
    "T8-P8",
    "P8-O2",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
)

#: Position row of each double-banana pair with ``bipolar="midpoint"``: the 10-10 electrode halfway
#: between the pair's two electrodes (a bipolar derivation measures the field between them). All 16 are
#: distinct rows inside the 129-row table, and rows of electrodes that 64-channel pretraining corpora use.
BIPOLAR_MIDPOINTS = {
    "FP1-F7": "AF7",
    "F7-T7": "FT7",
    "T7-P7": "TP7",
    "P7-O1": "PO7",
    "FP2-F8": "AF8",
    "F8-T8": "FT8",
    "T8-P8": "TP8",
    "P8-O2": "PO8",
    "FP1-F3": "AF3",
    "F3-C3": "FC3",
    "C3-P3": "CP3",
    "P3-O1": "PO3",
    "FP2-F4": "AF4",
    "F4-C4": "FC4",
    "C4-P4": "CP4",
    "P4-O2": "PO4",
}
_BIPOLAR_MODES = ("midpoint", "official")

#: LaBraM's input (all sizes, tokenizer included): 200 Hz, 1-s patches, at most 16, uV / 100.
LABRAM_INPUT = InputContract(
    family="labram",
    sfreq=200.0,
    patch_samples=200,
    max_patches=_N_TIME_ROWS,
    fixed_patches=False,
    uv_scale=0.01,
    normalisation="microvolts divided by 100 (official engines: samples / 100)",
    channel_names=tuple(name.upper() for name in STANDARD_1020[: _N_POSITION_ROWS - 1]),
)

_LAYER_NORM_EPS = 1e-6
_INIT_STD = 0.02


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for the '{name}' parameter. Allowed values are positive integers, "
            f"but got {value!r} instead."
        )


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"Invalid value for the '{name}' parameter. Allowed values are numbers in [0, 1), "
            f"but got {value!r} instead."
        )


def channel_positions(ch_names, bipolar="midpoint"):
    """Rows of LaBraM's channel-position table for a list of channel names.

    Referential names (``"Fp1"``, ``"CZ"``, ``"T3"``...) use their row in the official list (upper case,
    row = list index + 1; old and new 10-20 names are distinct rows there, as in the official code).
    Double-banana pairs (``"FP1-F7"``...): the official list names all 16, but only the first 8 fall
    inside its 129-row table (rows 121-128); ``FP1-F3`` ... ``P4-O2`` would be rows 129-136 and the
    official code fails on them (braindecode drops them). ``bipolar="midpoint"`` (default) keeps all 16 by
    placing each pair at the electrode halfway between its two electrodes (:data:`BIPOLAR_MIDPOINTS`):
    one consistent rule, 16 distinct rows, pretrained rows. ``bipolar="official"`` uses the pairs' own rows
    (the official behaviour, e.g. to reproduce an official model fine-tuned on the first 8 pairs) and
    refuses the 8 without a row.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in the order of the input's channels (case-insensitive).
    bipolar : {"midpoint", "official"}
        How bipolar pairs are placed (see above).

    Returns
    -------
    rows : list of int
        One row per channel, in ``[1, 128]`` (row 0 is the CLS token's).

    Raises
    ------
    ValueError
        If a name is unknown, repeated, has no row, or ``bipolar`` is invalid.
    TypeError
        If ``ch_names`` is not a sequence of strings.

    References
    ----------
    .. [1] Official ``utils.get_input_chans`` and ``utils.standard_1020``,
       https://github.com/935963004/LaBraM
    """
    if bipolar not in _BIPOLAR_MODES:
        raise ValueError(
            f"Invalid value for the 'bipolar' parameter. Allowed values are {_BIPOLAR_MODES}, "
            f"but got {bipolar!r} instead."
        )
    if isinstance(ch_names, str) or not all(isinstance(name, str) for name in ch_names):
        raise TypeError(
            f"Invalid value for the 'ch_names' parameter. Expected a sequence of channel names "
            f"(str), but got {ch_names!r} instead."
        )
    names = [name.strip().upper() for name in ch_names]
    if not names:
        raise ValueError(
            "Invalid value for the 'ch_names' parameter. At least one channel is needed, "
            "but got an empty list instead."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Invalid value for the 'ch_names' parameter: {repeated} appear more than once.")
    rows, unknown, outside = [], [], []
    for name in names:
        if bipolar == "midpoint" and name in BIPOLAR_MIDPOINTS:
            name = BIPOLAR_MIDPOINTS[name]
        row = _LOOKUP.get(name)
        if row is None:
            unknown.append(name)
        elif row >= _N_POSITION_ROWS:
            outside.append(name)
        rows.append(row)
    if unknown:
        raise ValueError(
            f"Invalid value for the 'ch_names' parameter: {unknown} are not in LaBraM's 10-20 "
            f"list (models.labram.STANDARD_1020; bipolar pairs: {sorted(BIPOLAR_MIDPOINTS)})."
        )
    if outside:
        raise ValueError(
            f"Invalid value for the 'ch_names' parameter: {outside} have no row in LaBraM's "
            f"129-row position table with bipolar='official'; use bipolar='midpoint' to place "
            f"the double-banana pairs at their midpoint electrodes."
        )
    return rows


def spectrum_targets(x, patch_samples=200):
    """VQ-NSP targets: standardised Fourier amplitude and phase of every patch.

    Each patch's full FFT (``patch_samples`` bins, not the one-sided rFFT) in float32; amplitude and
    phase are each standardised per sample: minus the mean, divided by the unbiased standard deviation
    over all channels, patches and bins of that sample, as the official ``VQNSP.std_norm``.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_chans, n_times)
        EEG in uV / 100; ``n_times`` a multiple of ``patch_samples``.
    patch_samples : int
        Samples per patch (200).

    Returns
    -------
    amplitude, angle : torch.Tensor, each (batch, n_chans * n_patches, patch_samples)
        Channel-major tokens, float32, dimensionless.

    Raises
    ------
    ValueError
        If ``x`` is not 3-D or ``n_times`` is not a multiple of ``patch_samples``.

    References
    ----------
    .. [1] Official ``VQNSP.forward`` / ``std_norm``, https://github.com/935963004/LaBraM
    """
    _check_positive_int("patch_samples", patch_samples)
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] % patch_samples:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"Invalid value for the 'x' parameter. Expected a tensor of shape (batch, n_chans, "
            f"n_times) with n_times a multiple of {patch_samples}, but got {got} instead."
        )
    batch = x.shape[0]
    spectrum = torch.fft.fft(x.float().reshape(batch, -1, patch_samples), dim=-1)

    def standardise(values):
        mean = values.mean(dim=(1, 2), keepdim=True)
        std = values.std(dim=(1, 2), keepdim=True)
        return (values - mean) / std

    return standardise(spectrum.abs()), standardise(spectrum.angle())


def codebook_usage(codes, n_codes):
    """Perplexity and unused codes of a set of tokenizer codes: the codebook-usage figures to log.

    Parameters
    ----------
    codes : torch.Tensor of int64, any shape
        Codes in ``[0, n_codes)`` (e.g. :meth:`VQNSP.tokenize` over a validation set).
    n_codes : int
        Codebook size.

    Returns
    -------
    perplexity : float
        ``exp(entropy)`` of the code histogram (natural log): ``k`` when ``k`` codes are used equally,
        ``n_codes`` at best.
    n_unused : int
        Codes never used (the official ``calculate_codebook_usage`` reports this count).

    Raises
    ------
    ValueError
        If ``codes`` is empty or holds values outside ``[0, n_codes)``.
    """
    _check_positive_int("n_codes", n_codes)
    flat = codes.reshape(-1)
    if flat.numel() == 0 or int(flat.min()) < 0 or int(flat.max()) >= n_codes:
        raise ValueError(
            f"Invalid value for the 'codes' parameter. Expected a non-empty tensor of codes in "
            f"[0, {n_codes}), but got {flat.numel()} values"
            + (f" in [{int(flat.min())}, {int(flat.max())}] instead." if flat.numel() else " instead.")
        )
    counts = torch.bincount(flat, minlength=n_codes).double()
    probabilities = counts[counts > 0] / counts.sum()
    entropy = -(probabilities * probabilities.log()).sum()
    return float(entropy.exp()), int((counts == 0).sum())


class Attention(nn.Module):
    """Multi-head self-attention with LaBraM/BEiT's parameters: separate q and v biases, optional qk-norm.

    ``qkv`` has no bias of its own; with ``qkv_bias`` the bias is ``(q_bias, 0, v_bias)`` (no key bias), as
    the official ``Attention`` (timm's ViT ``Attention`` has one fused bias, hence a module of our own).
    ``q_norm``/``k_norm`` act per head. Computed with ``F.scaled_dot_product_attention`` (same numbers to
    float rounding as the official explicit softmax).
    """

    def __init__(
        self, dim, num_heads, qkv_bias=False, qk_norm=False, attn_drop=0.0, proj_drop=0.0, norm_layer=None
    ):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.q_norm = norm_layer(head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(head_dim) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        batch, n_tokens, dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, n_tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q).type_as(v), self.k_norm(k).type_as(v)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(batch, n_tokens, dim)))


class Block(nn.Module):
    """Pre-norm transformer block with optional layer scale ``gamma_1``/``gamma_2`` (official names).

    ``x + drop_path(gamma_1 * attn(norm1(x)))`` then ``x + drop_path(gamma_2 * mlp(norm2(x)))``; no layer
    scale when ``init_values`` is 0 or None. The MLP is timm's ``Mlp`` with dropout only after ``fc2``, as
    the official one.
    """

    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=False,
        qk_norm=False,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        init_values=None,
        norm_layer=None,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            attn_drop=attn_drop,
            proj_drop=drop,
            norm_layer=norm_layer,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=(0.0, drop))
        if init_values:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x):
        y = self.attn(self.norm1(x))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


class _CodeEmbed(nn.Module):
    """The VQ-NSP decoder's input: a 1x1 convolution of the codes (official ``PatchEmbed``), per token."""

    def __init__(self, code_dim, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(code_dim, embed_dim, kernel_size=(1, 1))

    def forward(self, codes):
        return F.linear(codes, self.proj.weight.flatten(1), self.proj.bias)


def _trunc_normal(tensor, cut_at_std):
    # official: timm trunc_normal_(std=.02) cuts at +/-2 (absolute: a plain normal); the masked-modelling
    # code cuts at +/-std
    bound = _INIT_STD if cut_at_std else 2.0
    nn.init.trunc_normal_(tensor, mean=0.0, std=_INIT_STD, a=-bound, b=bound)


class LaBraM(nn.Module):
    """LaBraM's NeuralTransformer with a classification, masked-EEG-modelling or no head.

    Pipeline for ``x`` of shape (batch, n_chans, n_times), ``n_times = n_patches * patch_samples``:

    1. temporal convolution per patch (:class:`models.m4cea.TemporalEmbedding` with ``tie=False``:
       LaBraM's ``TemporalConv``, 8 filters) -> ``embed_dim = 8 * ceil(patch_samples / 8)`` features
       (200 for 1-s patches at 200 Hz);
    2. ``head="pretrain"``: masked tokens (``mask`` True) replaced by the learnable ``mask_token``;
    3. plus the position row of each token's channel (:func:`channel_positions`) and the time row of its
       patch (``time_embed``, at most 16); a CLS token (``cls_token`` plus position row 0, or in
       pretraining the first channel's row: the official quirk) is prepended;
    4. ``depth`` pre-norm blocks (qk-norm, layer scale ``init_values``, no qkv bias by default);
    5. head: ``"classification"`` -> mean of the patch tokens -> ``fc_norm`` -> ``head``;
       ``"pretrain"`` -> final ``norm`` -> ``lm_head`` logits over the VQ-NSP vocabulary, symmetric
       (see :meth:`forward`); ``None`` -> ``fc_norm`` of every patch token (the VQ-NSP encoder/decoder).

    Initialisation as the official code: position/time/CLS tables and Linear weights normal (std 0.02),
    biases 0, LayerNorm (1, 0); ``attn.proj`` and ``mlp.fc2`` of block ``i`` divided by ``sqrt(2 (i+1))``;
    classification head weights and bias times 0.001; in pretraining every cut at +/- 0.02 and the
    convolutions re-initialised too. Draws from torch's default generator.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in input order (:func:`channel_positions`).
    patch_samples : int
        Samples per patch (200: 1 s at 200 Hz).
    max_patches : int
        Longest input in patches (at most 16, the official time table).
    depth, num_heads : int
        Transformer blocks (12) and heads (10).
    mlp_ratio : float
        MLP width over ``embed_dim`` (4).
    qkv_bias : bool
        Separate q and v biases (False in LaBraM, True in the VQ-NSP encoder/decoder).
    qk_norm : bool
        LayerNorm of q and k per head (True in LaBraM).
    init_values : float
        Layer-scale initial value; 0 disables layer scale (0.1 in LaBraM fine-tuning/pretraining).
    drop_rate, attn_drop_rate, drop_path_rate : float
        Dropout after projections/MLP, on attention weights, and stochastic depth of the last block
        (linear from 0), each in [0, 1).
    vocab_size : int
        Number of VQ-NSP codes the pretraining head predicts (8192).
    bipolar : {"midpoint", "official"}
        Placement of bipolar channel names (:func:`channel_positions`).
    head : {"classification", "pretrain"} | None
        Which head to build.
    n_outputs : int | None
        Classes; required with ``head="classification"``, else None.
    code_dim : int | None
        Build a VQ-NSP decoder: the input are quantised codes of this width (a 1x1 convolution embeds
        them) instead of the signal; needs ``head=None``.

    Raises
    ------
    ValueError
        On invalid sizes, names or head settings.

    References
    ----------
    .. [1] Jiang, Zhao, Lu, "Large Brain Model for Learning Generic Representations with Tremendous EEG
       Data in BCI", ICLR 2024; official ``NeuralTransformer`` / ``NeuralTransformerForMaskedEEGModeling``,
       https://github.com/935963004/LaBraM
    """

    def __init__(
        self,
        ch_names=DOUBLE_BANANA,
        patch_samples=200,
        max_patches=16,
        depth=12,
        num_heads=10,
        mlp_ratio=4.0,
        qkv_bias=False,
        qk_norm=True,
        init_values=0.1,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
        vocab_size=8192,
        bipolar="midpoint",
        head="classification",
        n_outputs=None,
        code_dim=None,
    ):
        super().__init__()
        if head is not None and head not in LABRAM_HEAD_TYPES:
            raise ValueError(
                f"Invalid value for the 'head' parameter. Allowed values are "
                f"{LABRAM_HEAD_TYPES} or None, but got {head!r} instead."
            )
        for name, value in (
            ("patch_samples", patch_samples),
            ("max_patches", max_patches),
            ("depth", depth),
            ("num_heads", num_heads),
            ("vocab_size", vocab_size),
        ):
            _check_positive_int(name, value)
        if max_patches > _N_TIME_ROWS:
            raise ValueError(
                f"Invalid value for the 'max_patches' parameter. LaBraM's time table has "
                f"{_N_TIME_ROWS} rows, but got {max_patches} instead."
            )
        for name, value in (
            ("drop_rate", drop_rate),
            ("attn_drop_rate", attn_drop_rate),
            ("drop_path_rate", drop_path_rate),
        ):
            _check_rate(name, value)
        if isinstance(init_values, bool) or not isinstance(init_values, (int, float)) or init_values < 0:
            raise ValueError(
                f"Invalid value for the 'init_values' parameter. Allowed values are numbers >= 0 "
                f"(0: no layer scale), but got {init_values!r} instead."
            )
        if code_dim is not None:
            _check_positive_int("code_dim", code_dim)
            if head is not None:
                raise ValueError(
                    f"Invalid value for the 'head' parameter. A VQ-NSP decoder (code_dim="
                    f"{code_dim}) has no head, but got {head!r} instead."
                )
        rows = channel_positions(ch_names, bipolar=bipolar)
        self.ch_names = tuple(name.strip().upper() for name in ch_names)
        self.bipolar = bipolar
        self.register_buffer("input_rows", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.n_chans = len(rows)
        self.patch_samples = patch_samples
        self.max_patches = max_patches
        self.depth = depth
        self.num_heads = num_heads
        self.head_type = head
        self.code_dim = code_dim

        if code_dim is None:
            self.patch_embed = TemporalEmbedding(patch_samples, tie=False)
            embed_dim = self.patch_embed.out_features
        else:
            embed_dim = temporal_feature_dim(patch_samples)  # the encoder's width (200), as official
            self.patch_embed = _CodeEmbed(code_dim, embed_dim)
        if embed_dim % num_heads:
            raise ValueError(
                f"Invalid value for the 'num_heads' parameter. It must divide embed_dim="
                f"{embed_dim}, but got {num_heads} instead."
            )
        self.embed_dim = self.num_features = embed_dim

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if head == "pretrain":
            self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, _N_POSITION_ROWS, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, _N_TIME_ROWS, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        norm_layer = partial(nn.LayerNorm, eps=_LAYER_NORM_EPS)
        drop_path = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            [
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_norm=qk_norm,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=drop_path[i],
                    init_values=init_values,
                    norm_layer=norm_layer,
                )
                for i in range(depth)
            ]
        )
        self.vocab_size = None
        self.n_outputs = None
        if head == "pretrain":
            if n_outputs is not None:
                raise ValueError(
                    f"Invalid value for the 'n_outputs' parameter. The pretraining head predicts "
                    f"{vocab_size} codes and takes no n_outputs, but got {n_outputs!r} instead."
                )
            self.vocab_size = vocab_size
            self.norm = norm_layer(embed_dim)
            self.lm_head = nn.Linear(embed_dim, vocab_size)
        else:
            self.fc_norm = norm_layer(embed_dim)
            if head == "classification":
                self._set_classifier(n_outputs)
            elif n_outputs is not None:
                raise ValueError(
                    f"Invalid value for the 'n_outputs' parameter. A model without head takes "
                    f"no n_outputs, but got {n_outputs!r} instead."
                )
        self._init_weights()

    # construction helpers -------------------------------------------------------------------------------
    def _set_classifier(self, n_outputs):
        if n_outputs is None:
            raise ValueError(
                "Invalid value for the 'n_outputs' parameter. A classification head needs the "
                "number of classes, but got None instead."
            )
        _check_positive_int("n_outputs", n_outputs)
        self.n_outputs = n_outputs
        self.head = nn.Linear(
            self.embed_dim, n_outputs, device=self.pos_embed.device, dtype=self.pos_embed.dtype
        )

    def _init_weights(self):
        pretrain = self.head_type == "pretrain"
        tables = [self.pos_embed, self.time_embed, self.cls_token]
        if pretrain:
            tables.append(self.mask_token)
        for table in tables:
            _trunc_normal(table, pretrain)
        for module in self.modules():
            if isinstance(module, nn.Linear) or (pretrain and isinstance(module, nn.Conv2d)):
                _trunc_normal(module.weight, pretrain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for layer_id, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))
            if self.head_type == "classification":
                self.head.weight.mul_(0.001)
                self.head.bias.mul_(0.001)

    # input ----------------------------------------------------------------------------------------------
    def n_patches_of(self, n_times):
        """Number of patches of an input of ``n_times`` samples, checked against the model.

        Raises
        ------
        ValueError
            If ``n_times`` is not a positive multiple of ``patch_samples`` or exceeds ``max_patches``.
        """
        if n_times <= 0 or n_times % self.patch_samples or n_times // self.patch_samples > self.max_patches:
            raise ValueError(
                f"Invalid value for the 'x' parameter. n_times must be a multiple of "
                f"patch_samples={self.patch_samples} of at most max_patches={self.max_patches} "
                f"patches, but got n_times={n_times} instead."
            )
        return n_times // self.patch_samples

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"a tensor of {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(
                f"Invalid value for the 'x' parameter. Expected a floating-point torch.Tensor, "
                f"but got {got} instead."
            )
        if x.ndim != 3 or x.shape[1] != self.n_chans:
            raise ValueError(
                f"Invalid value for the 'x' parameter. Expected shape (batch, n_chans="
                f"{self.n_chans}, n_times), but got {tuple(x.shape)} instead."
            )
        return self.n_patches_of(x.shape[2])

    def _check_mask(self, mask, batch, n_tokens):
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = f"a tensor of {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(
                f"Invalid value for the 'mask' parameter. Expected a bool torch.Tensor (True = "
                f"masked), but got {got} instead."
            )
        if tuple(mask.shape) != (batch, n_tokens):
            raise ValueError(
                f"Invalid value for the 'mask' parameter. Expected shape (batch={batch}, "
                f"n_tokens={n_tokens}), but got {tuple(mask.shape)} instead."
            )

    # backbone -------------------------------------------------------------------------------------------
    def forward_tokens(self, tokens, n_patches, mask=None):
        """Transformer on embedded tokens: mask, positions, CLS, blocks, final norm.

        Parameters
        ----------
        tokens : torch.Tensor, shape (batch, n_chans * n_patches, embed_dim)
            Channel-major patch embeddings.
        n_patches : int
            Patches per channel.
        mask : torch.Tensor of bool, shape (batch, n_chans * n_patches) | None
            Pretraining only: True where the token is replaced by ``mask_token``.

        Returns
        -------
        features : torch.Tensor, shape (batch, 1 + n_chans * n_patches, embed_dim)
            CLS first; after the final ``norm`` (pretraining) or unnormalised (other heads, whose
            ``fc_norm`` comes after pooling).
        """
        batch = tokens.shape[0]
        if mask is not None:
            if self.head_type != "pretrain":
                raise ValueError(
                    "Invalid value for the 'mask' parameter. Only head='pretrain' masks tokens, "
                    "but got a mask instead of None."
                )
            self._check_mask(mask, batch, tokens.shape[1])
            tokens = torch.where(mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        positions = self.pos_embed[0, self.input_rows]  # (n_chans, embed_dim)
        tokens = tokens + positions.repeat_interleave(n_patches, dim=0)
        tokens = tokens + self.time_embed[0, :n_patches].repeat(self.n_chans, 1)
        # official quirk: in masked modelling the CLS gets the first channel's position row
        cls_row = positions[0] if self.head_type == "pretrain" else self.pos_embed[0, 0]
        cls = (self.cls_token + cls_row).expand(batch, -1, -1).to(tokens.dtype)
        h = self.pos_drop(torch.cat((cls, tokens), dim=1))
        for block in self.blocks:
            h = block(h)
        return self.norm(h) if self.head_type == "pretrain" else h

    def forward_features(self, x, mask=None):
        """Backbone on the signal: temporal convolution, (mask), positions, transformer.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            EEG at 200 Hz in uV / 100.
        mask : torch.Tensor of bool, shape (batch, n_chans * n_patches) | None
            Pretraining only (see :meth:`forward_tokens`).

        Returns
        -------
        features : torch.Tensor, shape (batch, 1 + n_chans * n_patches, embed_dim)
            CLS first (see :meth:`forward_tokens`).

        Raises
        ------
        TypeError, ValueError
            On a wrong type or shape of ``x`` or ``mask``.
        """
        if self.code_dim is not None:
            raise ValueError(
                "A VQ-NSP decoder reads codes: call forward_tokens(patch_embed(codes), n_patches)."
            )
        n_patches = self._check_input(x)
        batch = x.shape[0]
        tokens = self.patch_embed(x.reshape(batch, self.n_chans * n_patches, self.patch_samples))
        return self.forward_tokens(tokens, n_patches, mask)

    def forward_head(self, features, pre_logits=False):
        """Apply the head to :meth:`forward_features`'s output.

        Parameters
        ----------
        features : torch.Tensor, shape (batch, 1 + n_tokens, embed_dim)
        pre_logits : bool
            Classification: return the pooled, normalised features (batch, embed_dim) without ``head``.

        Returns
        -------
        logits : torch.Tensor
            ``"classification"``: (batch, n_outputs). ``"pretrain"``: code logits of every patch token
            (batch, n_tokens, vocab_size). No head: ``fc_norm`` of every patch token
            (batch, n_tokens, embed_dim).
        """
        patch_tokens = features[:, 1:]
        if self.head_type == "pretrain":
            return self.lm_head(patch_tokens)
        if self.head_type is None:
            return self.fc_norm(patch_tokens)
        pooled = self.fc_norm(patch_tokens.mean(dim=1))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x, mask=None):
        """Classify, or predict the codes of masked tokens.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            EEG at 200 Hz in uV / 100, ``n_times`` a multiple of 200 of at most 16 patches.
        mask : torch.Tensor of bool, shape (batch, n_chans * n_patches) | None
            Pretraining: True = masked (required). Classification: must be None.

        Returns
        -------
        logits : torch.Tensor, shape (batch, n_outputs)
            ``head="classification"``.
        (logits_masked, logits_visible) : tuple of torch.Tensor, shapes (n_masked, vocab_size) and
            (n_visible, vocab_size)
            ``head="pretrain"``: the official symmetric forward: logits of the tokens ``mask`` masks, and
            of the other tokens when ``~mask`` masks them (second pass), each in ``x[mask]`` order (batch,
            then token). Cross-entropy against the tokenizer's codes ``codes[mask]``, ``codes[~mask]``.
        features : torch.Tensor, shape (batch, n_tokens, embed_dim)
            No head.
        """
        if self.head_type != "pretrain":
            return self.forward_head(self.forward_features(x, mask))
        if mask is None:
            raise ValueError(
                "Invalid value for the 'mask' parameter. head='pretrain' needs a bool mask of "
                "shape (batch, n_tokens), but got None instead."
            )
        n_patches = self._check_input(x)
        batch = x.shape[0]
        self._check_mask(mask, batch, self.n_chans * n_patches)
        # the official two passes (mask, then ~mask) as one batch: same numbers, one transformer call
        both = self.forward_features(torch.cat((x, x)), torch.cat((mask, ~mask)))[:, 1:]
        return self.lm_head(both[:batch][mask]), self.lm_head(both[batch:][~mask])

    # timm-like surface ----------------------------------------------------------------------------------
    def reset_classifier(self, n_outputs):
        """Replace the head by a new classification head (``fc_norm`` + ``head``), freshly initialised.

        On a pretraining model this drops ``mask_token``, ``norm`` and ``lm_head`` (as the official
        fine-tuning does with a masked-modelling checkpoint) and builds ``fc_norm`` (1, 0).

        Parameters
        ----------
        n_outputs : int
            Number of classes.

        Raises
        ------
        ValueError
            If ``n_outputs`` is not a positive integer, or the model is a VQ-NSP decoder.
        """
        _check_positive_int("n_outputs", n_outputs)
        if self.code_dim is not None:
            raise ValueError("A VQ-NSP decoder cannot get a classification head.")
        if self.head_type == "pretrain":
            del self.mask_token, self.norm, self.lm_head
            self.vocab_size = None
            self.fc_norm = nn.LayerNorm(
                self.embed_dim, eps=_LAYER_NORM_EPS, device=self.pos_embed.device, dtype=self.pos_embed.dtype
            )
        self.head_type = "classification"
        self._set_classifier(n_outputs)
        _trunc_normal(self.head.weight, cut_at_std=False)
        with torch.no_grad():
            self.head.weight.mul_(0.001)
            self.head.bias.zero_()

    def no_weight_decay(self):
        """Names kept out of weight decay, as the official code: ``pos_embed``, ``cls_token``, ``time_embed``.

        Returns
        -------
        names : set of str
        """
        return {"pos_embed", "cls_token", "time_embed"}

    def group_matcher(self, coarse=False):
        """Parameter groups for timm's layer-wise learning-rate decay (embeddings 0, block i -> i + 1).

        Returns
        -------
        matcher : dict
        """
        return dict(
            stem=r"^cls_token|^mask_token|^pos_embed|^time_embed|^patch_embed", blocks=r"^blocks\.(\d+)"
        )

    def get_layer_id(self, param_name):
        """Layer index for layer-wise learning-rate decay (official ``get_num_layer_for_vit``).

        Parameters
        ----------
        param_name : str
            A name from ``named_parameters()`` (``module.`` / ``_orig_mod.`` prefixes allowed).

        Returns
        -------
        layer_id : int
            0 for the embeddings and tables, ``i + 1`` for block ``i``, ``depth + 1`` for norms and heads.

        Raises
        ------
        ValueError
            If ``param_name`` is not a parameter of this model.
        """
        name = param_name
        for prefix in ("module.", "_orig_mod."):
            while name.startswith(prefix):
                name = name[len(prefix) :]
        if name not in dict(self.named_parameters()):
            raise ValueError(
                f"Invalid value for the 'param_name' parameter: {param_name!r} is not a parameter "
                f"of this LaBraM model."
            )
        if name in ("cls_token", "mask_token", "pos_embed", "time_embed") or name.startswith("patch_embed."):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1  # norm, fc_norm, head, lm_head

    def extra_repr(self):
        return (
            f"n_chans={self.n_chans}, patch_samples={self.patch_samples}, max_patches={self.max_patches}, "
            f"head_type={self.head_type!r}, n_outputs={self.n_outputs}, vocab_size={self.vocab_size}"
        )


# VQ-NSP ------------------------------------------------------------------------------------------------
def _l2norm(x):
    return F.normalize(x, p=2, dim=-1)


def _all_reduce(tensor):
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


class _Codebook(nn.Module):
    """Codebook state with the official names (``EmbeddingEMA``): all buffers, updated by EMA only."""

    def __init__(self, n_codes, code_dim, kmeans_init):
        super().__init__()
        weight = torch.zeros(n_codes, code_dim) if kmeans_init else _l2norm(torch.randn(n_codes, code_dim))
        self.register_buffer("weight", weight)
        self.register_buffer("cluster_size", torch.zeros(n_codes))
        self.register_buffer("embed_avg", weight.clone())
        self.register_buffer("initted", torch.tensor([0.0 if kmeans_init else 1.0]))


class NormEMAQuantizer(nn.Module):
    """Cosine-similarity vector quantizer with an EMA codebook of unit vectors.

    Our version of the official ``NormEMAVectorQuantizer`` (BEiT v2 / LaBraM).

    Inputs are L2-normalised; the code of a vector is the nearest codebook row (squared Euclidean distance
    ``|z|^2 + |e|^2 - 2 z.e``, computed as the official code, i.e. the highest cosine similarity). In
    training each used code moves toward the normalised mean of its assigned vectors,
    ``e <- l2norm(decay * e + (1 - decay) * l2norm(mean))`` (all-reduced across processes under DDP).

    Parameters
    ----------
    n_codes, code_dim : int
        Codebook size (8192) and width (64 in the released tokenizer).
    beta : float
        Weight of the commitment loss ``beta * mse(z_q.detach(), z)`` (1).
    decay : float
        EMA decay (0.99).
    kmeans_init : bool
        Start from an empty codebook filled by cosine k-means on the first training batch.
    """

    def __init__(self, n_codes, code_dim, beta=1.0, decay=0.99, kmeans_init=True):
        super().__init__()
        self.n_codes, self.code_dim, self.beta, self.decay = n_codes, code_dim, beta, decay
        self.embedding = _Codebook(n_codes, code_dim, kmeans_init)
        self.register_buffer("cluster_size", torch.zeros(n_codes))  # EMA of code usage (statistics only)

    @property
    def initialised(self):
        return bool(self.embedding.initted.item())

    def codes(self, z):
        """Nearest codes of L2-normalised vectors ``z`` (n, code_dim) -> (n,) int64."""
        weight = self.embedding.weight
        distances = z.pow(2).sum(dim=1, keepdim=True) + weight.pow(2).sum(dim=1) - 2 * z @ weight.t()
        return distances.argmin(dim=1)

    @torch.no_grad()
    def kmeans_init(self, z, n_iters=10, generator=None):
        """Fill the codebook by cosine k-means of ``z`` (official ``kmeans``, 10 iterations).

        Parameters
        ----------
        z : torch.Tensor, shape (n, code_dim)
            L2-normalised vectors (the first training batch).
        n_iters : int
            k-means iterations.
        generator : torch.Generator | None
            Draws the initial means (default generator when None).
        """
        n = z.shape[0]
        if n >= self.n_codes:
            start = torch.randperm(n, generator=generator)[: self.n_codes]
        else:
            start = torch.randint(0, n, (self.n_codes,), generator=generator)
        means = z[start.to(z.device)]
        bins = None
        for _ in range(n_iters):
            buckets = (z @ means.t()).argmax(dim=-1)
            bins = torch.bincount(buckets, minlength=self.n_codes)
            sums = torch.zeros_like(means).index_add_(0, buckets, z)
            new_means = _l2norm(sums / bins.clamp(min=1).unsqueeze(1).to(z.dtype))
            means = torch.where((bins == 0).unsqueeze(1), means, new_means)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(means, 0)
            dist.broadcast(bins, 0)
        self.embedding.weight.copy_(means)
        self.embedding.cluster_size.copy_(bins.to(self.embedding.cluster_size.dtype))
        self.embedding.initted.fill_(1.0)

    @torch.no_grad()
    def ema_update(self, z, codes):
        """One EMA step of the codebook from vectors ``z`` (n, code_dim) assigned to ``codes`` (n,)."""
        bins = _all_reduce(torch.bincount(codes, minlength=self.n_codes).to(z.dtype))
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
        sums = _all_reduce(
            torch.zeros(self.n_codes, self.code_dim, dtype=z.dtype, device=z.device).index_add_(0, codes, z)
        )
        unused = bins == 0
        means = _l2norm(sums / bins.masked_fill(unused, 1.0).unsqueeze(1))
        weight = self.embedding.weight
        means = torch.where(unused.unsqueeze(1), weight, means)
        weight.mul_(self.decay).add_(means, alpha=1 - self.decay)
        weight.copy_(_l2norm(weight))

    @torch.no_grad()
    def count_usage(self, codes):
        """EMA of code usage (``cluster_size``), as the official quantizer keeps in every forward."""
        bins = _all_reduce(torch.bincount(codes, minlength=self.n_codes).to(self.cluster_size.dtype))
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)

    def forward(self, features, update=False):
        """Quantise.

        Parameters
        ----------
        features : torch.Tensor, shape (batch, n_tokens, code_dim)
            Encoder outputs (normalised here), float32.
        update : bool
            Training step: k-means initialisation if needed, then the EMA update of the codebook.

        Returns
        -------
        quantized : torch.Tensor, shape (batch, n_tokens, code_dim)
            Codebook rows with the straight-through gradient to ``features``.
        codes : torch.Tensor of int64, shape (batch, n_tokens)
        commitment_loss : torch.Tensor
            ``beta * mse(quantized.detach(), l2norm(features))``.
        """
        z = _l2norm(features)
        flat = z.reshape(-1, self.code_dim)
        if update and not self.initialised:
            self.kmeans_init(flat.detach())
        codes = self.codes(flat)
        z_q = F.embedding(codes, self.embedding.weight).view_as(z)
        if update:
            self.ema_update(flat.detach(), codes)
        loss = self.beta * F.mse_loss(z_q.detach(), z)
        return z + (z_q - z).detach(), codes.view(z.shape[:-1]), loss


class VQNSPLosses(NamedTuple):
    """Losses of a VQ-NSP forward (official ``VQNSP.forward``), each a scalar tensor.

    Attributes
    ----------
    loss : torch.Tensor
        ``quant_loss + rec_loss + rec_angle_loss``.
    rec_loss, rec_angle_loss : torch.Tensor
        MSE of the predicted standardised amplitude / phase (:func:`spectrum_targets`).
    quant_loss : torch.Tensor
        Commitment loss.
    codes : torch.Tensor of int64, shape (batch, n_tokens)
        The codes of this forward (for usage statistics).
    """

    loss: torch.Tensor
    rec_loss: torch.Tensor
    rec_angle_loss: torch.Tensor
    quant_loss: torch.Tensor
    codes: torch.Tensor


class VQNSP(nn.Module):
    """VQ-NSP: LaBraM's neural tokenizer (vector-quantised neural spectrum prediction).

    Encoder: a :class:`LaBraM` without head (qkv biases, no qk-norm, no layer scale) -> per-token
    ``encode_task_layer`` (Linear -> Tanh -> Linear to ``code_dim``, in float32) -> :class:`NormEMAQuantizer`
    (``n_codes`` x ``code_dim``). Decoder: a :class:`LaBraM` reading the quantised codes (1x1 convolution
    embedding) -> two heads predicting each token's standardised FFT amplitude and phase
    (``patch_samples`` values each). Parameter names and shapes are the official ones.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in input order (:func:`channel_positions`).
    patch_samples, max_patches : int
        As :class:`LaBraM` (200, 16).
    depth, decoder_depth : int
        Encoder (12) and decoder (3) blocks.
    num_heads : int
        Attention heads of both (10).
    n_codes, code_dim : int
        Codebook size (8192) and width (64 in the released ``vqnsp.pth``; the official default is 32).
    decay : float
        Codebook EMA decay (0.99).
    beta : float
        Commitment-loss weight (1).
    kmeans_init : bool
        Initialise the codebook by k-means on the first training batch (True) or with random unit vectors.
    bipolar : {"midpoint", "official"}
        Placement of bipolar channel names.

    References
    ----------
    .. [1] Jiang, Zhao, Lu, LaBraM, ICLR 2024; official ``modeling_vqnsp.py`` and ``norm_ema_quantizer.py``,
       https://github.com/935963004/LaBraM
    """

    def __init__(
        self,
        ch_names=DOUBLE_BANANA,
        patch_samples=200,
        max_patches=16,
        depth=12,
        decoder_depth=3,
        num_heads=10,
        n_codes=8192,
        code_dim=64,
        decay=0.99,
        beta=1.0,
        kmeans_init=True,
        bipolar="midpoint",
    ):
        super().__init__()
        for name, value in (("decoder_depth", decoder_depth), ("n_codes", n_codes), ("code_dim", code_dim)):
            _check_positive_int(name, value)
        _check_rate("decay", decay)
        common = dict(
            ch_names=ch_names,
            patch_samples=patch_samples,
            max_patches=max_patches,
            num_heads=num_heads,
            qkv_bias=True,
            qk_norm=False,
            init_values=0.0,
            drop_path_rate=0.0,
            bipolar=bipolar,
            head=None,
        )
        self.encoder = LaBraM(depth=depth, **common)
        self.decoder = LaBraM(depth=decoder_depth, code_dim=code_dim, **common)
        self.quantize = NormEMAQuantizer(n_codes, code_dim, beta=beta, decay=decay, kmeans_init=kmeans_init)
        width = self.encoder.embed_dim
        self.encode_task_layer = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, code_dim))
        self.decode_task_layer = nn.Sequential(
            nn.Linear(width, width), nn.Tanh(), nn.Linear(width, patch_samples)
        )
        self.decode_task_layer_angle = nn.Sequential(
            nn.Linear(width, width), nn.Tanh(), nn.Linear(width, patch_samples)
        )
        for layer in (self.encode_task_layer, self.decode_task_layer, self.decode_task_layer_angle):
            for module in layer:
                if isinstance(module, nn.Linear):
                    _trunc_normal(module.weight, cut_at_std=False)
                    nn.init.zeros_(module.bias)
        self.ch_names = self.encoder.ch_names
        self.n_chans = self.encoder.n_chans
        self.patch_samples = patch_samples
        self.n_codes, self.code_dim = n_codes, code_dim

    def encode(self, x, update=False):
        """Encoder and quantizer.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            EEG at 200 Hz in uV / 100.
        update : bool
            Update the codebook (k-means init if needed, EMA step).

        Returns
        -------
        quantized : torch.Tensor, shape (batch, n_tokens, code_dim)
            Straight-through quantised vectors.
        codes : torch.Tensor of int64, shape (batch, n_tokens)
        commitment_loss : torch.Tensor
        """
        features = self.encoder.forward_head(self.encoder.forward_features(x))
        with torch.autocast(device_type=x.device.type, enabled=False):
            to_quantizer = self.encode_task_layer(features.float())
            return self.quantize(to_quantizer, update=update)

    def decode(self, quantized, n_patches):
        """Decoder: predicted standardised amplitude and phase of every token.

        Parameters
        ----------
        quantized : torch.Tensor, shape (batch, n_chans * n_patches, code_dim)
        n_patches : int

        Returns
        -------
        amplitude, angle : torch.Tensor, each (batch, n_tokens, patch_samples)
        """
        tokens = self.decoder.patch_embed(quantized)
        features = self.decoder.forward_head(self.decoder.forward_tokens(tokens, n_patches))
        return self.decode_task_layer(features), self.decode_task_layer_angle(features)

    def _check_ready(self):
        if not self.quantize.initialised:
            raise ValueError(
                "The VQ-NSP codebook is not initialised (kmeans_init=True and no training step "
                "yet): load a trained tokenizer or train it first."
            )

    def tokenize(self, x):
        """Codes of every token (the targets of LaBraM's masked EEG modelling). Never updates the codebook.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            EEG at 200 Hz in uV / 100.

        Returns
        -------
        codes : torch.Tensor of int64, shape (batch, n_chans * n_patches)
            Channel-major, in ``[0, n_codes)``.

        Raises
        ------
        ValueError
            On a wrong input shape, or an uninitialised codebook.
        """
        self._check_ready()
        return self.encode(x)[1]

    def reconstruct(self, x):
        """Decoder predictions of the standardised FFT amplitude and phase (no codebook update).

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)

        Returns
        -------
        amplitude, angle : torch.Tensor, each (batch, n_chans * n_patches, patch_samples)
        """
        self._check_ready()
        quantized = self.encode(x)[0]
        return self.decode(quantized, x.shape[2] // self.patch_samples)

    def forward(self, x):
        """Training/validation forward: losses of the official ``VQNSP.forward``.

        In training mode the codebook is updated (k-means initialisation on the first batch if
        ``kmeans_init``, then the EMA step); in both modes the code-usage EMA ``quantize.cluster_size`` is
        updated, as the official quantizer does.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            EEG at 200 Hz in uV / 100.

        Returns
        -------
        losses : VQNSPLosses
        """
        amplitude, angle = spectrum_targets(x, self.patch_samples)
        update = self.training
        if not update:
            self._check_ready()
        quantized, codes, quant_loss = self.encode(x, update=update)
        if not update:
            self.quantize.count_usage(codes.reshape(-1))
        rec_amplitude, rec_angle = self.decode(quantized, x.shape[2] // self.patch_samples)
        rec_loss = F.mse_loss(rec_amplitude.float(), amplitude)
        rec_angle_loss = F.mse_loss(rec_angle.float(), angle)
        return VQNSPLosses(
            quant_loss + rec_loss + rec_angle_loss, rec_loss, rec_angle_loss, quant_loss, codes
        )

    def no_weight_decay(self):
        """Official: the encoder's and decoder's ``cls_token``, ``pos_embed``, ``time_embed``.

        Returns
        -------
        names : set of str
        """
        return {
            f"{part}.{name}"
            for part in ("encoder", "decoder")
            for name in ("cls_token", "pos_embed", "time_embed")
        }
