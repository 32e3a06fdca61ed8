"""Knowledge-guided masking: exactly k distinct tokens, the official distribution, zero weights, seeding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from pretrain.masking import gumbel_noise, gumbel_topk_mask, num_masked_tokens

WEIGHTS = torch.tensor([0.30, 0.20, 0.15, 0.10, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005])


def test_num_masked_tokens():
    assert num_masked_tokens(320, 0.5) == 160  # the paper
    assert num_masked_tokens(320, 0.0) == 0 and num_masked_tokens(320, 1.0) == 320
    assert num_masked_tokens(10, 0.25) == 3  # 2.5 rounds half up
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="'mask_ratio'"):
            num_masked_tokens(320, bad)


@pytest.mark.parametrize("k", [0, 1, 160, 319, 320])
def test_exactly_k_distinct_tokens(k):
    weights = torch.distributions.Dirichlet(torch.ones(320)).sample((64,))
    mask = gumbel_topk_mask(weights, k, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (64, 320)
    assert mask.sum(dim=1).tolist() == [k] * 64  # a bool mask: k distinct tokens per row


def test_first_draw_follows_weights():
    """The top-1 of log(w) + Gumbel is one draw of the categorical distribution w (chi-square test)."""
    n = 200_000
    noise = gumbel_noise((n, WEIGHTS.numel()), torch.Generator().manual_seed(1))
    first = torch.argmax(torch.log(WEIGHTS) + noise, dim=1)
    counts = torch.bincount(first, minlength=WEIGHTS.numel()).double().numpy()
    expected = WEIGHTS.double().numpy() * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    critical = stats.chi2.ppf(1 - 1e-4, df=WEIGHTS.numel() - 1)  # ~33.7
    assert chi2 < critical
    np.testing.assert_allclose(counts / n, WEIGHTS.numpy(), atol=0.004)
    # The test has power: drawing without the log (w + noise) is far off.
    wrong = torch.bincount(torch.argmax(WEIGHTS + noise, dim=1), minlength=WEIGHTS.numel()).double().numpy()
    assert float(((wrong - expected) ** 2 / expected).sum()) > 100 * critical


def _inclusion_without_replacement(w: np.ndarray, k: int) -> np.ndarray:
    """Exact P(token i is among k sequential draws without replacement, each proportional to w)."""
    p = np.zeros(w.size)
    for order in itertools.permutations(range(w.size), k):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= w[i] / left
            left -= w[i]
        p[list(order)] += prob
    return p


def test_k_draws_match_official_choice_without_replacement():
    """Gumbel top-k = np.random.choice(n, k, p=w, replace=False): inclusion probabilities match exactly."""
    w = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
    k, n = 2, 200_000
    weights = torch.tensor(w, dtype=torch.float32).expand(n, -1)
    mask = gumbel_topk_mask(weights, k, generator=torch.Generator().manual_seed(2))
    freq = mask.double().mean(dim=0).numpy()
    exact = _inclusion_without_replacement(w, k)
    np.testing.assert_allclose(exact.sum(), k)
    np.testing.assert_allclose(freq, exact, atol=0.005)
    # Sampling with probability proportional to w *with* replacement-like independence would give
    # 1 - (1 - w)^k, which differs by more than the tolerance: the comparison can fail.
    assert np.abs(1 - (1 - w) ** k - exact).max() > 0.02


def test_random_strategy_is_uniform():
    n = 50_000
    mask = gumbel_topk_mask(torch.ones(n, 20), 5, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(mask.double().mean(dim=0).numpy(), 0.25, atol=0.01)


def test_zero_weights_never_drawn_unless_needed():
    weights = torch.zeros(2000, 12)
    weights[:, :6] = torch.rand(2000, 6) + 1e-30  # 6 positive weights per row
    weights[:, 0] = 1e-40  # a subnormal positive weight still beats a zero
    gen = torch.Generator().manual_seed(4)
    enough = gumbel_topk_mask(weights, 6, generator=gen)
    assert enough[:, :6].all() and not enough[:, 6:].any()
    short = gumbel_topk_mask(weights, 9, generator=gen)  # 3 more than positive weights
    assert short[:, :6].all() and short.sum(1).eq(9).all()
    # The extra tokens are drawn uniformly among the zero-weight ones.
    np.testing.assert_allclose(short[:, 6:].double().mean(0).numpy(), 0.5, atol=0.05)


def test_seeded_and_noise_equivalent():
    weights = torch.rand(8, 320)
    a = gumbel_topk_mask(weights, 160, generator=torch.Generator().manual_seed(5))
    b = gumbel_topk_mask(weights, 160, generator=torch.Generator().manual_seed(5))
    c = gumbel_topk_mask(weights, 160, noise=gumbel_noise((8, 320), torch.Generator().manual_seed(5)))
    d = gumbel_topk_mask(weights, 160, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(a, d)


def test_gumbel_noise_moments():
    noise = gumbel_noise((400_000,), torch.Generator().manual_seed(7))
    assert torch.isfinite(noise).all()
    assert abs(noise.mean().item() - 0.5772) < 0.01  # Euler-Mascheroni constant
    assert abs(noise.var().item() - np.pi**2 / 6) < 0.02


def test_invalid_arguments():
    weights = torch.rand(2, 10)
    with pytest.raises(ValueError, match="'k'"):
        gumbel_topk_mask(weights, 11, generator=torch.Generator())
    with pytest.raises(ValueError, match="'weights'"):
        gumbel_topk_mask(torch.rand(10), 2, generator=torch.Generator())
    with pytest.raises(ValueError, match="'noise'"):
        gumbel_topk_mask(weights, 2, noise=torch.rand(2, 9))
    with pytest.raises(ValueError, match="generator"):
        gumbel_topk_mask(weights, 2)
