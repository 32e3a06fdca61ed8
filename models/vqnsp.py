"""LaBraM's VQ-NSP tokenizer: vector-quantised neural spectrum prediction with a norm-EMA codebook.

Our implementation of the tokenizer of Jiang, Zhao, Lu, "Large Brain Model for Learning Generic
Representations with Tremendous EEG Data in BCI", ICLR 2024 (official ``modeling_vqnsp.py``,
``norm_ema_quantizer.py``), with the official parameter names (see :mod:`models.labram` for the encoder
and decoder transformers it is built from, and the official behaviours reproduced).

References
----------
.. [1] Jiang, Zhao, Lu, ICLR 2024. https://github.com/935963004/LaBraM
.. [2] Peng et al., "BEiT v2: Masked Image Modeling with Vector-Quantized Visual Tokenizers", 2022
   (the norm-EMA quantizer). https://github.com/microsoft/unilm/tree/master/beitv2
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .labram import LaBraM, _check_positive_int, _check_rate, _trunc_normal
from .labram_channels import DOUBLE_BANANA

__all__ = ["VQNSP", "NormEMAQuantizer", "VQNSPLosses", "codebook_usage", "spectrum_targets"]


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
