"""TIE temporal embedding of M4CEA (and LaBraM's temporal convolution): per-patch convolutional features.

Each patch of ``patch_samples`` samples of one channel becomes ``temporal_feature_dim(patch_samples)``
features (25 time steps x 8 filters for 200 samples). With ``tie=True`` the first convolution is TIE-EEGNet's
(a 63-sample convolution plus a learnable temporal embedding of the average-pooled input); with
``tie=False`` it is LaBraM's temporal convolution. Training uses the official convolutions; prediction can
use each stage as its impulse-response matrix (:meth:`TemporalEmbedding.fuse`), the same function.

References
----------
.. [1] Peng, Zhao, Yang, Wang, Ding, Wu, "TIE-EEGNet: Temporal Information Enhanced EEGNet for Seizure
   Subtype Classification", IEEE Trans. Neural Syst. Rehabil. Eng., 2022. https://github.com/rmpeng/TIE-EEGNet
.. [2] Feng, Hu, Jiang, Gao, Cao, "M4CEA", IEEE J. Biomed. Health Inform., 2025 (official code
   https://github.com/Evigouse/M4CEA_Project).
.. [3] Jiang, Zhao, Lu, "Large Brain Model ...", ICLR 2024. https://github.com/935963004/LaBraM
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runtime.config import UsageError

__all__ = ["TemporalEmbedding", "temporal_feature_dim"]

# Fixed hyper-parameters of the temporal embedding (official TIE_Layer / LaBraM TemporalConv).
_N_FILTERS = 8  # convolution channels of the temporal embedding
_N_GROUPS = 4  # GroupNorm groups
_TIE_KERNEL_SAMPLES = 63  # TIE convolution and average-pooling kernel, 'same' padding
_STEM_KERNEL_SAMPLES = 15  # first strided convolution
_STEM_STRIDE_SAMPLES = 8


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(
            f"Invalid value for the '{name}' parameter. Allowed values are positive integers, "
            f"but got {value!r} instead."
        )


def temporal_feature_dim(patch_samples):
    """Number of features the temporal embedding produces per patch.

    The strided convolution (kernel 15, stride 8, padding 7) turns a patch of ``patch_samples`` samples
    into ``ceil(patch_samples / 8)`` time steps of 8 channels, flattened as (time, channel). For the
    paper's 200-sample patches (0.2 s at 1000 Hz, or 1 s at 200 Hz) that is 25 x 8 = 200 features; a
    400-sample patch gives 400, a 256-sample patch 256 (any multiple of 8 maps to itself).

    Parameters
    ----------
    patch_samples : int
        Samples per patch.

    Returns
    -------
    n_features : int
        ``8 * ceil(patch_samples / 8)``.

    Raises
    ------
    ValueError
        If ``patch_samples`` is not a positive integer.
    """
    _check_positive_int("patch_samples", patch_samples)
    pad = _STEM_KERNEL_SAMPLES // 2
    n_steps = (patch_samples + 2 * pad - _STEM_KERNEL_SAMPLES) // _STEM_STRIDE_SAMPLES + 1
    return n_steps * _N_FILTERS


class TemporalEmbedding(nn.Module):
    """Per-patch temporal convolution embedding, with or without the TIE layer.

    With ``tie=True`` (M4CEA [1]_, TIE layer from TIE-EEGNet [2]_) each patch first goes through
    ``Conv2d(1 -> 8, kernel (1, 63), 'same', no bias)`` plus an average pooling of the patch
    (kernel 63, stride 1, zero padding counted) multiplied sample-wise by a learnable temporal embedding
    ``scale_factor`` of length ``patch_samples``, then GroupNorm(4, 8) + GELU. Both variants then apply
    LaBraM's temporal convolution [3]_: ``Conv2d(-> 8, (1, 15), stride (1, 8), padding (0, 7))`` and two
    ``Conv2d(8 -> 8, (1, 3), padding (0, 1))``, each followed by GroupNorm(4, 8) + GELU.

    With ``tie=False`` (ablation) the TIE stage is absent and the first strided convolution reads the raw
    patch (1 input channel): exactly LaBraM's ``TemporalConv``. Both give
    :func:`temporal_feature_dim` (``patch_samples``) features per patch.

    The patches of one sample are the rows of one image (batch, 1, n_tokens, patch_samples), so the
    GroupNorm statistics are taken over all tokens of a sample, as in the official code.
    By default each convolution runs as the convolution itself (:meth:`forward_convolutions`); after
    :meth:`fuse` (an explicit inference step, :meth:`M4CEA.fuse`) each is one matrix product over whole
    patches (its impulse-response matrix, :meth:`forward_matrices`): the same result to float rounding,
    each the faster where it is used.

    Parameters
    ----------
    patch_samples : int
        Samples per patch (200 in the paper: 0.2 s at 1000 Hz).
    tie : bool
        Use the TIE layer (True, M4CEA) or not (False, LaBraM temporal convolution).

    References
    ----------
    .. [1] Feng et al., "M4CEA", IEEE JBHI 2025; https://github.com/Evigouse/M4CEA_Project
    .. [2] Peng et al., "TIE-EEGNet", IEEE TNSRE 2022; https://github.com/rmpeng/TIE-EEGNet
    .. [3] Jiang et al., "LaBraM", ICLR 2024; https://github.com/935963004/LaBraM
    """

    def __init__(self, patch_samples, tie=True):
        super().__init__()
        _check_positive_int("patch_samples", patch_samples)
        if not isinstance(tie, bool):
            raise TypeError(
                f"Invalid value for the 'tie' parameter. Allowed values are True or False, "
                f"but got {tie!r} instead."
            )
        self.patch_samples = patch_samples
        self.tie = tie
        self.out_features = temporal_feature_dim(patch_samples)
        self.matrix_form = False  # fuse(): the matrix form, for inference
        n = _N_FILTERS
        if tie:
            self.scale_factor = nn.Parameter(torch.randn(patch_samples))  # standard normal, as official
            self.tie_conv = nn.Conv2d(
                1, n, (1, _TIE_KERNEL_SAMPLES), padding=(0, _TIE_KERNEL_SAMPLES // 2), bias=False
            )
            self.tie_norm = nn.GroupNorm(_N_GROUPS, n)
        self.conv1 = nn.Conv2d(
            n if tie else 1,
            n,
            (1, _STEM_KERNEL_SAMPLES),
            stride=(1, _STEM_STRIDE_SAMPLES),
            padding=(0, _STEM_KERNEL_SAMPLES // 2),
        )
        self.norm1 = nn.GroupNorm(_N_GROUPS, n)
        self.conv2 = nn.Conv2d(n, n, (1, 3), padding=(0, 1))
        self.norm2 = nn.GroupNorm(_N_GROUPS, n)
        self.conv3 = nn.Conv2d(n, n, (1, 3), padding=(0, 1))
        self.norm3 = nn.GroupNorm(_N_GROUPS, n)

    def stage_matrices(self):
        """The embedding's convolutions as matrices acting on whole patches.

        Every convolution (and the TIE average pooling times ``scale_factor``) is a linear map of one
        patch, so it equals a matrix: its response to each unit impulse (:func:`_conv_matrix`). Built
        from the parameters at every call (cheap: one convolution of an identity), so gradients reach
        the convolution weights as usual.

        Returns
        -------
        stages : list of (matrix, bias, norm)
            ``matrix`` of shape (8 * n_out_steps, n_in_chans * n_in_steps), rows ordered (channel, step);
            ``bias`` of shape (8 * n_out_steps,) or None; ``norm`` the GroupNorm that follows.
        """
        if self.tie:
            first = _conv_matrix(self.tie_conv, self.patch_samples) + _pooling_matrix(
                self.patch_samples, _TIE_KERNEL_SAMPLES, self.scale_factor
            )
            stages = [(first, None, self.tie_norm)]
        else:
            stages = []
        n_steps = self.patch_samples
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2), (self.conv3, self.norm3)):
            matrix = _conv_matrix(conv, n_steps)
            n_steps = matrix.shape[0] // conv.out_channels
            stages.append((matrix, conv.bias.repeat_interleave(n_steps), norm))
        return stages

    def fuse(self, enabled=True):
        """Compute the embedding in matrix form (:meth:`forward_matrices`) from now on, or not.

        Both forms compute the same function (to float rounding, tested). The matrix form is the faster
        one without gradients (m4cea_base on a 2-core CPU: 1.34x the bf16 forward of the whole model);
        with gradients the convolutions are as fast or faster (fp32 1.5%, compiled bf16 13% faster
        training steps), so inference fuses explicitly and training does not.

        Parameters
        ----------
        enabled : bool
            True: matrix form; False: convolutions (the default of a new module).

        Returns
        -------
        self : TemporalEmbedding
        """
        self.matrix_form = bool(enabled)
        return self

    def forward(self, patches):
        """Embed patches: :meth:`forward_matrices` once fused (:meth:`fuse`), else the convolutions.

        Parameters
        ----------
        patches : torch.Tensor, shape (batch, n_tokens, patch_samples)
            Patches of the (scaled) signal.

        Returns
        -------
        features : torch.Tensor, shape (batch, n_tokens, out_features)
            Flattened as (time step, channel): feature ``t * 8 + c``.
        """
        if self.matrix_form:
            return self.forward_matrices(patches)
        return self.forward_convolutions(patches)

    def forward_matrices(self, patches):
        """The embedding in matrix form: one batched matrix product per stage (:meth:`stage_matrices`).

        Each stage multiplies the tokens, as columns, by the stage's impulse-response matrix, then applies
        the GroupNorm and GELU: the same numbers as the per-patch convolutions, to float rounding, and
        2-3x faster on the CPU in bfloat16 (the TIE convolution reads one input channel, for which
        convolution kernels are slow).

        Parameters
        ----------
        patches : torch.Tensor, shape (batch, n_tokens, patch_samples)

        Returns
        -------
        features : torch.Tensor, shape (batch, n_tokens, out_features)
            As :meth:`forward`.
        """
        batch, n_tokens, _ = patches.shape
        h = patches.transpose(1, 2)  # (batch, patch_samples, n_tokens): one column per token
        for matrix, bias, norm in self.stage_matrices():
            h = torch.matmul(matrix, h)
            if bias is not None:
                h = h + bias[:, None]
            # rows (channel, step): channel c's statistics over all its steps and all tokens of a sample,
            # as GroupNorm over the (batch, 8, n_tokens, n_steps) image of the convolution form
            h = F.gelu(
                F.group_norm(h.reshape(batch, _N_FILTERS, -1), _N_GROUPS, norm.weight, norm.bias, norm.eps)
            ).reshape(h.shape)
        n_steps = h.shape[1] // _N_FILTERS
        h = h.reshape(batch, _N_FILTERS, n_steps, n_tokens)
        return h.permute(0, 3, 2, 1).reshape(batch, n_tokens, -1)

    def forward_convolutions(self, patches):
        """The same embedding computed as the official code does: convolutions over one image per sample.

        The patches of a sample are the rows of a (1, n_tokens, patch_samples) image; ``Conv2d`` and
        ``AvgPool2d`` (zero padding counted) run along the rows. Used in training (see :meth:`forward`).

        Parameters
        ----------
        patches : torch.Tensor, shape (batch, n_tokens, patch_samples)

        Returns
        -------
        features : torch.Tensor, shape (batch, n_tokens, out_features)
            As :meth:`forward`.
        """
        batch, n_tokens, _ = patches.shape
        h = patches.unsqueeze(1)  # (batch, 1, n_tokens, patch_samples)
        if self.tie:
            pad = _TIE_KERNEL_SAMPLES // 2
            pooled = F.avg_pool2d(h, (1, _TIE_KERNEL_SAMPLES), stride=1, padding=(0, pad))
            h = F.gelu(self.tie_norm(self.tie_conv(h) + pooled * self.scale_factor))
        h = F.gelu(self.norm1(self.conv1(h)))
        h = F.gelu(self.norm2(self.conv2(h)))
        h = F.gelu(self.norm3(self.conv3(h)))  # (batch, 8, n_tokens, n_steps)
        return h.permute(0, 2, 3, 1).reshape(batch, n_tokens, -1)


def _conv_matrix(conv, n_in_steps):
    """Matrix of a ``Conv2d`` with a (1, k) kernel applied along one row, bias excluded.

    The convolution of ``conv.in_channels`` rows of ``n_in_steps`` samples is linear, so it is the matrix
    whose column ``j`` is its response to the unit impulse ``j`` (input channel ``j // n_in_steps``,
    step ``j % n_in_steps``).

    Parameters
    ----------
    conv : torch.nn.Conv2d
        Kernel height 1 (any width, stride and padding along the row).
    n_in_steps : int
        Samples per input row.

    Returns
    -------
    matrix : torch.Tensor, shape (out_channels * n_out_steps, in_channels * n_in_steps)
        Rows ordered (output channel, output step); ``conv(x)`` flattened the same way equals
        ``matrix @ x.flatten()`` (without the bias).
    """
    n_in = conv.in_channels * n_in_steps
    basis = torch.eye(n_in, device=conv.weight.device, dtype=conv.weight.dtype)
    response = F.conv2d(
        basis.view(n_in, conv.in_channels, 1, n_in_steps), conv.weight, None, conv.stride, conv.padding
    )  # (n_in, out_channels, 1, n_out_steps)
    return response.reshape(n_in, -1).T


def _pooling_matrix(n_steps, kernel_samples, scale):
    """Matrix of the TIE term: 'same' average pooling (zero padding counted) times ``scale`` per step.

    Returns
    -------
    matrix : torch.Tensor, shape (8 * n_steps, n_steps)
        The same ``(n_steps, n_steps)`` block for each of the 8 output channels (the pooled patch is
        added to every channel of the TIE convolution), rows ordered (channel, step).
    """
    steps = torch.arange(n_steps, device=scale.device)
    band = (steps[:, None] - steps[None, :]).abs() <= kernel_samples // 2
    block = band.to(scale.dtype) * (scale[:, None] / kernel_samples)
    return block.repeat(_N_FILTERS, 1)
