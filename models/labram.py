"""LaBraM family: the NeuralTransformer (classification / masked EEG modelling) and the VQ-NSP tokenizer.

Our implementation of the NeuralTransformer of Jiang, Zhao, Lu, "Large Brain Model for Learning Generic
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

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from runtime.distributed import unwrap_name

from .labram_channels import (
    _N_POSITION_ROWS,
    _N_TIME_ROWS,
    BIPOLAR_MIDPOINTS,
    DOUBLE_BANANA,
    LABRAM_INPUT,
    STANDARD_1020,
    channel_positions,
)
from .tie import TemporalEmbedding, temporal_feature_dim

__all__ = [
    "BIPOLAR_MIDPOINTS",
    "DOUBLE_BANANA",
    "LABRAM_HEAD_TYPES",
    "LABRAM_INPUT",
    "STANDARD_1020",
    "LaBraM",
    "channel_positions",
]

LABRAM_HEAD_TYPES = ("pretrain", "classification")

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


class Attention(nn.Module):
    """Multi-head self-attention with LaBraM/BEiT's parameters: separate q and v biases, optional qk-norm.

    ``qkv`` has no bias of its own; with ``qkv_bias`` the bias is ``(q_bias, 0, v_bias)`` (no key bias), as
    the official ``Attention`` (timm's ViT ``Attention`` has one fused bias, hence a module of our own).
    ``q_norm``/``k_norm`` act per head. ``fused_attn`` (timm's switch, set for every model by
    :func:`models.attention.configure_attention`): True computes ``F.scaled_dot_product_attention``, False
    the official explicit softmax (faster on a CPU for these heads); the same numbers to float rounding.
    """

    fused_attn = True

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
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        else:
            attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
            x = F.dropout(attn.softmax(dim=-1), self.attn_drop, self.training) @ v
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
    def get_classifier(self):
        """The classification layer, ``head`` (what a linear probe trains; ``fc_norm`` stays frozen)."""
        return self.head

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
        name = unwrap_name(param_name)
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
