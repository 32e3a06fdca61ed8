"""M4CEA architecture family: TIE temporal embedding, input embedding, transformer and heads.

One backbone (temporal embedding -> masked input embedding -> pre-norm qk-norm transformer) is shared by
pretraining and fine-tuning; only the head differs:

- ``head="pretrain"``: two heads predict the Fourier magnitude and phase of every patch
  (each ``Linear(embed_dim, embed_dim) -> Tanh -> Linear(embed_dim, patch_samples // 2 + 1)``).
- ``head="classification"``: mean over tokens -> ELU -> ``Linear(embed_dim, n_outputs)``.

Tokens are channel-major: token ``i = channel * n_patches + patch``, each patch ``patch_samples`` consecutive
samples of one channel. The model expects every channel already divided by the 95th percentile of its
absolute value over the window (done by the data loader, not here).

References
----------
.. [1] Feng, Hu, Jiang, Gao, Cao, "M4CEA: A Knowledge-guided Foundation Model for Childhood Epilepsy
   Analysis", IEEE J. Biomed. Health Inform., 2025, doi:10.1109/JBHI.2025.3590463.
   Official code: https://github.com/Evigouse/M4CEA_Project
.. [2] Peng, Zhao, Yang, Wang, Ding, Wu, "TIE-EEGNet: Temporal Information Enhanced EEGNet for Seizure
   Subtype Classification", IEEE Trans. Neural Syst. Rehabil. Eng., 2022. https://github.com/rmpeng/TIE-EEGNet
.. [3] Jiang, Zhao, Lu, "Large Brain Model for Learning Generic Representations with Tremendous EEG Data
   in BCI", ICLR 2024. https://github.com/935963004/LaBraM
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from runtime.config import UsageError
from runtime.distributed import unwrap_name

from .tie import TemporalEmbedding, temporal_feature_dim

__all__ = ["HEAD_TYPES", "M4CEA", "TemporalEmbedding", "patch_spectrum", "temporal_feature_dim"]

HEAD_TYPES = ("pretrain", "classification")

_INIT_STD = 0.02
_LAYER_NORM_EPS = 1e-6


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(
            f"Invalid value for the '{name}' parameter. Allowed values are positive integers, "
            f"but got {value!r} instead."
        )


def patch_spectrum(x, patch_samples):
    """Fourier magnitude and phase of every patch: the pretraining targets.

    Each channel is cut into consecutive patches of ``patch_samples`` samples and ``torch.fft.rfft`` is
    taken per patch, in float32 whatever the input dtype. Pass the same (per-channel scaled) signal the
    model sees.

    Parameters
    ----------
    x : torch.Tensor, shape (batch, n_chans, n_times)
        Signal, float. ``n_times`` must be a multiple of ``patch_samples``.
    patch_samples : int
        Samples per patch.

    Returns
    -------
    magnitude : torch.Tensor, shape (batch, n_chans * n_patches, patch_samples // 2 + 1)
        ``abs`` of the spectrum, float32, in the units of ``x`` (unnormalised FFT).
    phase : torch.Tensor, shape (batch, n_chans * n_patches, patch_samples // 2 + 1)
        ``angle`` of the spectrum in radians, in ``[-pi, pi]``, float32.
        Tokens are channel-major (token ``channel * n_patches + patch``), as in the model.

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point tensor.
    ValueError
        If ``x`` is not 3-D or ``n_times`` is not a multiple of ``patch_samples``.

    Notes
    -----
    Same targets as the official ``M4CEA.forward`` (``torch.fft.rfft`` of the reshaped input, then
    ``abs`` and ``angle``) [1]_, flattened from (batch, n_chans, n_patches, n_freqs) to tokens.

    References
    ----------
    .. [1] Feng et al., "M4CEA", IEEE JBHI 2025; https://github.com/Evigouse/M4CEA_Project
    """
    _check_positive_int("patch_samples", patch_samples)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"a tensor of {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(
            f"Invalid value for the 'x' parameter. Expected a floating-point torch.Tensor, "
            f"but got {got} instead."
        )
    if x.ndim != 3 or x.shape[-1] % patch_samples != 0:
        raise ValueError(
            f"Invalid value for the 'x' parameter. Expected shape (batch, n_chans, n_times) with n_times a "
            f"multiple of patch_samples={patch_samples}, but got {tuple(x.shape)} instead."
        )
    batch, n_chans, n_times = x.shape
    patches = x.float().reshape(batch, n_chans * (n_times // patch_samples), patch_samples)
    spectrum = torch.fft.rfft(patches, dim=-1)
    return spectrum.abs(), spectrum.angle()


def _init_module(module):
    """Initialise one module as the official code effectively does (see DESIGN.md section 2)."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=_INIT_STD, a=-_INIT_STD, b=_INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class M4CEA(nn.Module):
    """M4CEA: TIE temporal embedding + LaBraM-style transformer, with a pretraining or classification head.

    Pipeline for ``x`` of shape (batch, n_chans, n_times):

    1. cut every channel into ``n_patches`` patches of ``patch_samples`` samples -> ``n_tokens =
       n_chans * n_patches`` channel-major tokens;
    2. :class:`TemporalEmbedding` -> ``temporal_feature_dim(patch_samples)`` features per token
       (200 for 200-sample patches);
    3. masked tokens (``mask`` True) get their temporal features replaced by the learnable
       ``mask_token`` (before the projection, as in the official code);
    4. ``Linear(n_features, embed_dim)`` plus a learnable positional table ``pos_embed`` of shape
       (n_tokens, embed_dim) (one row per channel-patch position; no separate channel embedding);
    5. ``depth`` pre-norm transformer blocks (timm ``Block``: LayerNorm eps 1e-6, per-head LayerNorm on
       q and k, no qkv bias, GELU MLP, fused scaled-dot-product attention, drop-path rising linearly from 0
       to ``drop_path_rate``), final LayerNorm;
    6. head: ``"pretrain"`` -> (magnitude, phase) per token, ``"classification"`` -> logits.

    Initialisation follows what takes effect in the official code: Linear and Conv2d weights truncated
    normal (std 0.02, cut at +/- 0.02, empirical std about 0.0108), biases 0, LayerNorm/GroupNorm (1, 0),
    no depth rescaling; ``scale_factor``, ``mask_token`` and ``pos_embed`` standard normal. It draws
    from torch's default generator: seed with ``torch.manual_seed`` before building.

    Parameters
    ----------
    n_chans : int
        EEG channels (16 in the paper).
    n_patches : int
        Patches per channel (20 in the paper: 4 s windows).
    patch_samples : int
        Samples per patch (200: 0.2 s at 1000 Hz). ``n_times = n_patches * patch_samples``.
    embed_dim : int
        Transformer width (200).
    depth : int
        Number of transformer blocks (12).
    num_heads : int
        Attention heads (8); must divide ``embed_dim``.
    mlp_ratio : float
        MLP hidden width over ``embed_dim`` (4).
    drop_path_rate : float
        Stochastic depth of the last block, in [0, 1); block ``i`` gets ``drop_path_rate * i / (depth-1)``.
    drop_rate : float
        Dropout after the attention projection and the MLP (0 in the paper).
    attn_drop_rate : float
        Dropout on the attention weights (0 in the paper).
    tie : bool
        True: TIE temporal embedding (M4CEA). False: LaBraM temporal convolution (ablation), same
        feature size; see :class:`TemporalEmbedding`.
    head : {"pretrain", "classification"}
        Which head to build.
    n_outputs : int | None
        Classes of the classification head; required for ``head="classification"``, must be None for
        ``head="pretrain"``.

    Attributes
    ----------
    n_tokens : int
        ``n_chans * n_patches``.
    n_times : int
        ``n_patches * patch_samples``.
    n_freqs : int
        ``patch_samples // 2 + 1``: rFFT bins predicted per token by the pretraining heads.
    n_features : int
        Temporal-embedding features per token (``temporal_feature_dim(patch_samples)``).
    head_type : str
        ``"pretrain"`` or ``"classification"``.

    Raises
    ------
    ValueError
        On invalid sizes or head settings (the message names the parameter and the value).

    References
    ----------
    .. [1] Feng, Hu, Jiang, Gao, Cao, "M4CEA: A Knowledge-guided Foundation Model for Childhood Epilepsy
       Analysis", IEEE JBHI 2025, doi:10.1109/JBHI.2025.3590463; https://github.com/Evigouse/M4CEA_Project
    .. [2] Peng et al., "TIE-EEGNet", IEEE TNSRE 2022; https://github.com/rmpeng/TIE-EEGNet
    .. [3] Jiang, Zhao, Lu, "Large Brain Model for Learning Generic Representations with Tremendous EEG
       Data in BCI", ICLR 2024; https://github.com/935963004/LaBraM
    """

    def __init__(
        self,
        n_chans=16,
        n_patches=20,
        patch_samples=200,
        embed_dim=200,
        depth=12,
        num_heads=8,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        tie=True,
        head="pretrain",
        n_outputs=None,
    ):
        super().__init__()
        if head not in HEAD_TYPES:
            raise ValueError(
                f"Invalid value for the 'head' parameter. Allowed values are {HEAD_TYPES}, "
                f"but got {head!r} instead."
            )
        for name, value in (
            ("n_chans", n_chans),
            ("n_patches", n_patches),
            ("patch_samples", patch_samples),
            ("embed_dim", embed_dim),
            ("depth", depth),
            ("num_heads", num_heads),
        ):
            _check_positive_int(name, value)
        if embed_dim % num_heads != 0:
            raise UsageError(
                f"Invalid value for the 'num_heads' parameter. It must divide embed_dim="
                f"{embed_dim}, but got {num_heads} instead."
            )
        for name, value in (
            ("drop_path_rate", drop_path_rate),
            ("drop_rate", drop_rate),
            ("attn_drop_rate", attn_drop_rate),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise UsageError(
                    f"Invalid value for the '{name}' parameter. Allowed values are numbers in "
                    f"[0, 1), but got {value!r} instead."
                )
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise UsageError(
                f"Invalid value for the 'mlp_ratio' parameter. Allowed values are positive "
                f"numbers, but got {mlp_ratio!r} instead."
            )
        self.n_chans = n_chans
        self.n_patches = n_patches
        self.patch_samples = patch_samples
        self.n_times = n_patches * patch_samples
        self.n_tokens = n_chans * n_patches
        self.n_freqs = patch_samples // 2 + 1
        self.embed_dim = self.num_features = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.tie = tie

        self.patch_embed = TemporalEmbedding(patch_samples, tie=tie)
        self.n_features = self.patch_embed.out_features
        self.mask_token = nn.Parameter(torch.empty(self.n_features))
        self.input_proj = nn.Linear(self.n_features, embed_dim)
        self.pos_embed = nn.Parameter(torch.empty(self.n_tokens, embed_dim))
        norm_layer = partial(nn.LayerNorm, eps=_LAYER_NORM_EPS)  # timm passes it to q_norm/k_norm too
        drop_path = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(
            *[
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=False,
                    qk_norm=True,
                    proj_drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=drop_path[i],
                    act_layer=nn.GELU,
                    norm_layer=norm_layer,
                )
                for i in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)

        self.head_type = head
        self.n_outputs = None
        if head == "pretrain":
            if n_outputs is not None:
                raise ValueError(
                    f"Invalid value for the 'n_outputs' parameter. The pretraining head "
                    f"predicts {self.n_freqs} rFFT bins per token and takes no n_outputs, "
                    f"but got {n_outputs!r} instead."
                )
            self.head_magnitude = self._spectrum_head()
            self.head_phase = self._spectrum_head()
        else:
            self._set_classifier(n_outputs)
        self.apply(_init_module)
        for param in self._standard_normal_parameters():
            nn.init.normal_(param, mean=0.0, std=1.0)

    # construction helpers -------------------------------------------------------------------------------
    def _spectrum_head(self):
        return nn.Sequential(
            nn.Linear(self.embed_dim, self.embed_dim), nn.Tanh(), nn.Linear(self.embed_dim, self.n_freqs)
        )

    def _set_classifier(self, n_outputs):
        if n_outputs is None:
            raise ValueError(
                "Invalid value for the 'n_outputs' parameter. A classification head needs the "
                "number of classes, but got None instead."
            )
        _check_positive_int("n_outputs", n_outputs)
        self.n_outputs = n_outputs
        self.head_act = nn.ELU()
        self.head = nn.Linear(
            self.embed_dim, n_outputs, device=self.pos_embed.device, dtype=self.pos_embed.dtype
        )

    def _standard_normal_parameters(self):
        params = [self.mask_token, self.pos_embed]
        if self.tie:
            params.append(self.patch_embed.scale_factor)
        return params

    # timm-like surface ----------------------------------------------------------------------------------
    def _check_input(self, x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"a tensor of {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(
                f"Invalid value for the 'x' parameter. Expected a floating-point torch.Tensor, "
                f"but got {got} instead."
            )
        if x.ndim != 3 or x.shape[1] != self.n_chans or x.shape[2] != self.n_times:
            raise ValueError(
                f"Invalid value for the 'x' parameter. Expected shape (batch, n_chans="
                f"{self.n_chans}, n_times={self.n_times}), but got {tuple(x.shape)} instead."
            )

    def _check_mask(self, mask, batch):
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = f"a tensor of {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(
                f"Invalid value for the 'mask' parameter. Expected a bool torch.Tensor (True = "
                f"masked), but got {got} instead."
            )
        if tuple(mask.shape) != (batch, self.n_tokens):
            raise ValueError(
                f"Invalid value for the 'mask' parameter. Expected shape (batch={batch}, "
                f"n_tokens={self.n_tokens}), but got {tuple(mask.shape)} instead."
            )

    def forward_features(self, x, mask=None):
        """Backbone: temporal embedding, masking, input projection, transformer, final norm.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            EEG, each channel already divided by the 95th percentile of its absolute value (+1e-8).
        mask : torch.Tensor of bool, shape (batch, n_tokens) | None
            True where a token is masked (token ``channel * n_patches + patch``); None masks nothing.

        Returns
        -------
        features : torch.Tensor, shape (batch, n_tokens, embed_dim)

        Raises
        ------
        TypeError
            If ``x`` is not a floating-point tensor or ``mask`` not a bool tensor.
        ValueError
            If ``x`` or ``mask`` has the wrong shape.
        """
        self._check_input(x)
        batch = x.shape[0]
        tokens = self.patch_embed(x.reshape(batch, self.n_tokens, self.patch_samples))
        if mask is not None:
            self._check_mask(mask, batch)
            tokens = torch.where(mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        h = self.input_proj(tokens) + self.pos_embed
        h = self.blocks(h)
        return self.norm(h)

    def forward_head(self, features, pre_logits=False):
        """Apply the head.

        Parameters
        ----------
        features : torch.Tensor, shape (batch, n_tokens, embed_dim)
            Output of :meth:`forward_features`.
        pre_logits : bool
            Classification only: return the token mean (batch, embed_dim) before ELU and the linear layer.

        Returns
        -------
        (magnitude, phase) : tuple of torch.Tensor, each (batch, n_tokens, n_freqs)
            For ``head_type == "pretrain"``: predicted rFFT magnitude and phase of every patch.
        logits : torch.Tensor, shape (batch, n_outputs)
            For ``head_type == "classification"``.
        """
        if self.head_type == "pretrain":
            return self.head_magnitude(features), self.head_phase(features)
        pooled = features.mean(dim=1)
        if pre_logits:
            return pooled
        return self.head(self.head_act(pooled))

    def forward(self, x, mask=None):
        """Run backbone and head.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_chans, n_times)
            Per-channel 95th-percentile-scaled EEG.
        mask : torch.Tensor of bool, shape (batch, n_tokens) | None
            True = masked token (pretraining). None: no masking.

        Returns
        -------
        (pred_magnitude, pred_phase) : tuple of torch.Tensor, each (batch, n_tokens, patch_samples // 2 + 1)
            If ``head_type == "pretrain"``.
        logits : torch.Tensor, shape (batch, n_outputs)
            If ``head_type == "classification"``.
        """
        return self.forward_head(self.forward_features(x, mask))

    def fuse(self, enabled=True):
        """The inference form of the model: the temporal embedding as matrix products (or back).

        An explicit inference step (prediction calls it after loading); the outputs are the same to float
        rounding (:meth:`TemporalEmbedding.fuse`). Training keeps the convolutions.

        Parameters
        ----------
        enabled : bool
            True: fuse; False: back to the convolutions.

        Returns
        -------
        self : M4CEA
        """
        self.patch_embed.fuse(enabled)
        return self

    def get_classifier(self):
        """The classification layer, ``head`` (timm's surface; what a linear probe trains)."""
        return self.head

    def reset_classifier(self, n_outputs):
        """Replace the head by a new, freshly initialised classification head.

        Works on either kind of model: a pretraining model loses its magnitude/phase heads and becomes a
        classification model.

        Parameters
        ----------
        n_outputs : int
            Number of classes.

        Raises
        ------
        ValueError
            If ``n_outputs`` is not a positive integer.
        """
        _check_positive_int("n_outputs", n_outputs)
        if self.head_type == "pretrain":
            del self.head_magnitude, self.head_phase
        self.head_type = "classification"
        self._set_classifier(n_outputs)
        _init_module(self.head)

    def no_weight_decay(self):
        """Names of parameters to keep out of weight decay.

        The positional table ``pos_embed``, the ``mask_token`` and the TIE temporal embedding
        ``patch_embed.scale_factor`` (when ``tie``): learned embeddings, as LaBraM excludes its position
        and time embeddings. (Biases and norm weights are 1-D and excluded by timm's optimiser factory
        anyway.) The official code applies weight decay to everything.

        Returns
        -------
        names : set of str
        """
        names = {"pos_embed", "mask_token"}
        if self.tie:
            names.add("patch_embed.scale_factor")
        return names

    def group_matcher(self, coarse=False):
        """Parameter groups for timm's layer-wise learning-rate decay.

        Embedding parameters form group 0, block ``i`` group ``i + 1``, the final norm and the heads the
        last group (unmatched: timm puts them last), as :meth:`get_layer_id` (BEiT/LaBraM convention), so
        ``timm.optim.create_optimizer_v2(model, ..., layer_decay=0.65)`` works.

        Parameters
        ----------
        coarse : bool
            Unused (kept for timm's signature).

        Returns
        -------
        matcher : dict
        """
        return dict(stem=r"^patch_embed|^mask_token|^input_proj|^pos_embed", blocks=r"^blocks\.(\d+)")

    def get_layer_id(self, param_name):
        """Layer index of a parameter for layer-wise learning-rate decay.

        Parameters
        ----------
        param_name : str
            A name from ``named_parameters()`` (``module.`` / ``_orig_mod.`` prefixes allowed).

        Returns
        -------
        layer_id : int
            0 for the embedding (``patch_embed``, ``mask_token``, ``input_proj``, ``pos_embed``),
            ``i + 1`` for transformer block ``i``, ``depth + 1`` for the final norm and the heads.
            The scale of layer ``l`` is then ``layer_decay ** (depth + 1 - l)``.

        Raises
        ------
        ValueError
            If ``param_name`` is not a parameter of this model.
        """
        name = unwrap_name(param_name)
        if name.startswith(("patch_embed.", "input_proj.")) or name in ("mask_token", "pos_embed"):
            return 0
        if name.startswith("blocks."):
            index = name.split(".")[1]
            if index.isdigit() and int(index) < self.depth:
                return int(index) + 1
        if name.startswith(("norm.", "head.", "head_magnitude.", "head_phase.")):
            return self.depth + 1
        raise ValueError(
            f"Invalid value for the 'param_name' parameter: {param_name!r} is not a parameter "
            f"of this M4CEA model."
        )

    def extra_repr(self):
        return (
            f"n_chans={self.n_chans}, n_patches={self.n_patches}, patch_samples={self.patch_samples}, "
            f"head_type={self.head_type!r}, n_outputs={self.n_outputs}"
        )
