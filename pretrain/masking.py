"""Knowledge-guided masking: draw the tokens to mask with probability proportional to their MFDE.

The official code draws, per sample, ``np.random.choice(n_tokens, k, p=w, replace=False)``: k
tokens without replacement, each successive draw proportional to the remaining weights. The
Gumbel-top-k trick gives exactly that distribution in one vectorised operation on the device: add
independent standard Gumbel noise to ``log(w)`` and keep the k largest scores (Vieira 2014; Kool,
van Hoof & Welling, "Stochastic beams and where to find them", ICML 2019, section 3).

Random masking (the ablation) is the same draw with uniform weights.

Zero weights. ``log(0) = -inf`` would leave ties that ``topk`` breaks by position. Instead, tokens
of zero weight get the score ``ZERO_WEIGHT_SCORE + gumbel``, below every token of positive weight
(a positive float32 weight has ``log(w) >= -104`` and :func:`gumbel_noise` lies in
``[-4, 88]``). So a zero-weight token is never drawn while a positive-weight token is left, and
when a sample has fewer than k positive weights, the rest of its k tokens are drawn uniformly among
its zero-weight tokens.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MASKING_STRATEGIES", "ZERO_WEIGHT_SCORE", "gumbel_noise", "gumbel_topk_mask", "num_masked_tokens"]

#: Allowed values of the config key ``masking.strategy``.
MASKING_STRATEGIES = ("knowledge", "random")

#: Score offset of zero-weight tokens (see the module docstring).
ZERO_WEIGHT_SCORE = -1.0e4


def num_masked_tokens(n_tokens: int, mask_ratio: float) -> int:
    """Number of tokens to mask per sample: ``mask_ratio * n_tokens`` rounded half up.

    Parameters
    ----------
    n_tokens : int
        Tokens per sample (``n_chans * n_patches``, 320 for M4CEA).
    mask_ratio : float
        Fraction in ``[0, 1]`` (0.5 in the paper: 160 of 320).

    Returns
    -------
    k : int

    Raises
    ------
    ValueError
        If ``mask_ratio`` is outside ``[0, 1]``.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(
            "Invalid value for the 'mask_ratio' parameter. Allowed values are in [0, 1], "
            f"but got {mask_ratio!r} instead."
        )
    return min(n_tokens, int(math.floor(mask_ratio * n_tokens + 0.5)))


def gumbel_noise(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """Standard Gumbel samples ``-log(E)``, ``E ~ Exponential(1)``, drawn from ``generator``.

    Parameters
    ----------
    shape : tuple of int
        Output shape, e.g. ``(batch, n_tokens)``.
    generator : torch.Generator
        Seeded generator on ``device`` (the only source of randomness).
    device : torch.device | str | None
        Defaults to the generator's device.

    Returns
    -------
    noise : Tensor, shape ``shape``, float32
    """
    device = generator.device if device is None else device
    exponential = torch.empty(shape, dtype=torch.float32, device=device).exponential_(generator=generator)
    # An exact 0 would give +inf; the clamp keeps the noise within [-4, 88] (finite, see ZERO_WEIGHT_SCORE).
    return -torch.log(exponential.clamp_(min=torch.finfo(torch.float32).tiny))


def gumbel_topk_mask(
    weights: torch.Tensor,
    k: int,
    *,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask k tokens per sample, drawn without replacement with probability proportional to ``weights``.

    Parameters
    ----------
    weights : Tensor, shape (batch, n_tokens)
        Non-negative weights per token (the sample's MFDE, token index ``chan * n_patches + patch``);
        they need not sum to 1. Pass ``torch.ones`` for uniform random masking.
    k : int
        Tokens to mask per sample, ``0 <= k <= n_tokens``.
    generator : torch.Generator | None
        Seeded generator on the weights' device; used when ``noise`` is None.
    noise : Tensor, shape (batch, n_tokens) | None
        Standard Gumbel noise (:func:`gumbel_noise`) to use instead of drawing it, so that callers
        can draw one global batch of noise and give each micro-batch and rank its rows.

    Returns
    -------
    mask : Tensor, shape (batch, n_tokens), bool
        True for masked tokens; exactly ``k`` per row.

    Raises
    ------
    ValueError
        If ``k`` is out of range, shapes disagree, or neither ``generator`` nor ``noise`` is given.

    Notes
    -----
    Fully vectorised, no host synchronisation: one ``log``, one ``topk`` and one ``scatter``.
    Weights are not checked for negative or non-finite values here (that would synchronise); the
    dataset checks them when it reads each segment. See the module docstring for zero weights.

    References
    ----------
    Official M4CEA: ``np.random.choice(320, 160, p=mfde, replace=False)`` per sample.
    Kool, van Hoof & Welling (2019), Gumbel-top-k.
    """
    if weights.ndim != 2:
        raise ValueError(
            "Invalid shape for the 'weights' parameter: expected (batch, n_tokens), "
            f"but got {tuple(weights.shape)}."
        )
    batch, n_tokens = weights.shape
    if not 0 <= k <= n_tokens:
        raise ValueError(
            f"Invalid value for the 'k' parameter. Allowed values are 0..{n_tokens}, but got {k!r} instead."
        )
    if noise is None:
        if generator is None:
            raise ValueError("gumbel_topk_mask needs a seeded 'generator' or precomputed 'noise'.")
        noise = gumbel_noise((batch, n_tokens), generator, device=weights.device)
    elif noise.shape != weights.shape:
        raise ValueError(
            f"Invalid shape for the 'noise' parameter: expected {tuple(weights.shape)} like 'weights', "
            f"but got {tuple(noise.shape)}."
        )
    mask = torch.zeros((batch, n_tokens), dtype=torch.bool, device=weights.device)
    if k == 0:
        return mask
    weights = weights.float()
    positive = weights > 0
    log_w = torch.log(torch.where(positive, weights, torch.ones_like(weights)))
    scores = torch.where(positive, log_w, torch.full_like(log_w, ZERO_WEIGHT_SCORE)) + noise.float()
    index = torch.topk(scores, k, dim=1, sorted=False).indices
    return mask.scatter_(1, index, True)
