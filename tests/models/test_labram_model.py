"""LaBraM and VQ-NSP on tiny sizes: registry, channel table, input checks, codebook updates."""

import pytest
import torch
import torch.nn.functional as F

from models import (
    DOUBLE_BANANA,
    LABRAM_INPUT,
    VQNSP,
    LaBraM,
    channel_positions,
    codebook_usage,
    create_model,
    create_model_from_config,
    get_input_contract,
)
from models.labram import BIPOLAR_MIDPOINTS, STANDARD_1020
from models.vqnsp import NormEMAQuantizer

CH_NAMES = ["Fp1", "fp2", "C3", "O1"]


def _tiny(head="classification", n_outputs=3, seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = {"ch_names": CH_NAMES, **overrides}
    if head == "classification":
        return create_model("labram_tiny", head=head, n_outputs=n_outputs, **kwargs)
    return create_model("labram_tiny", head=head, **kwargs)


def _assert_every_parameter_learns(model):
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_labram_tiny_classification_runs_and_every_parameter_learns():
    model = _tiny()
    assert isinstance(model, LaBraM) and model.embed_dim == 200 and len(model.blocks) == 2
    x = torch.randn(2, 4, 600)
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    _assert_every_parameter_learns(model)


def test_labram_tiny_pretrain_is_symmetric_and_every_parameter_learns():
    model = _tiny("pretrain")
    x = torch.randn(2, 4, 400)  # 2 patches: 8 tokens
    mask = torch.tensor([[True, False] * 4, [False, False, True, True] * 2])
    logits_masked, logits_visible = model(x, mask)
    assert logits_masked.shape == (int(mask.sum()), 64) and logits_visible.shape == (int((~mask).sum()), 64)
    codes = torch.randint(0, 64, (2, 8))
    loss = F.cross_entropy(logits_masked, codes[mask]) + F.cross_entropy(logits_visible, codes[~mask])
    assert torch.isfinite(loss)
    loss.backward()
    _assert_every_parameter_learns(model)
    # the symmetric pass is the forward with the complementary mask, batched: same numbers
    model.eval()
    with torch.no_grad():
        masked, visible = model(x, mask)
        swapped_visible, swapped_masked = model(x, ~mask)
    torch.testing.assert_close(masked, swapped_masked, rtol=0, atol=1e-5)
    torch.testing.assert_close(visible, swapped_visible, rtol=0, atol=1e-5)


def test_vqnsp_tiny_trains_and_every_parameter_learns():
    torch.manual_seed(0)
    model = create_model("vqnsp_tiny", ch_names=CH_NAMES)
    assert isinstance(model, VQNSP) and not model.quantize.initialised
    x = torch.randn(3, 4, 400)
    with pytest.raises(ValueError, match="not initialised"):
        model.tokenize(x)
    losses = model(x)  # training mode: k-means initialisation, then the EMA step
    assert model.quantize.initialised
    assert torch.isfinite(losses.loss) and losses.codes.shape == (3, 8)
    torch.testing.assert_close(losses.loss, losses.rec_loss + losses.rec_angle_loss + losses.quant_loss)
    losses.loss.backward()
    _assert_every_parameter_learns(model)
    names = {name for name, _ in model.named_parameters()}
    assert not any(name.startswith("quantize.") for name in names)  # the codebook follows an EMA only
    codebook = model.quantize.embedding.weight
    torch.testing.assert_close(codebook.norm(dim=1), torch.ones(64))
    model.eval()
    with torch.no_grad():
        before = {k: v.clone() for k, v in model.state_dict().items()}
        codes = model.tokenize(x)
        amplitude, angle = model.reconstruct(x)
    assert codes.dtype == torch.int64 and codes.shape == (3, 8) and int(codes.max()) < 64
    assert amplitude.shape == angle.shape == (3, 8, 200)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _official_ema_step(weight, z, codes, decay):
    """The official NormEMAVectorQuantizer training update, with its one-hot matrices."""
    encodings = F.one_hot(codes, weight.shape[0]).type(z.dtype)
    bins = encodings.sum(0)
    zero = bins == 0
    bins = bins.masked_fill(zero, 1.0)
    embed = F.normalize((z.t() @ encodings / bins.unsqueeze(0)).t(), dim=-1)
    embed = torch.where(zero[..., None], weight, embed)
    return F.normalize(weight * decay + embed * (1 - decay), dim=-1)


def test_codebook_ema_step_is_the_official_one():
    torch.manual_seed(1)
    quantizer = NormEMAQuantizer(n_codes=32, code_dim=8, decay=0.9, kmeans_init=False)
    features = torch.randn(2, 20, 8)
    z = F.normalize(features, dim=-1).reshape(-1, 8)
    old = quantizer.embedding.weight.clone()
    expected_codes = (z @ old.t()).argmax(dim=1)  # nearest unit vector = highest cosine similarity
    quantized, codes, loss = quantizer(features, update=True)
    assert torch.equal(codes.reshape(-1), expected_codes)
    torch.testing.assert_close(quantizer.embedding.weight, _official_ema_step(old, z, expected_codes, 0.9))
    unused = torch.ones(32, dtype=torch.bool)
    unused[expected_codes] = False
    # unused codes keep their vector (the official step renormalises them: equal to rounding)
    torch.testing.assert_close(quantizer.embedding.weight[unused], old[unused], rtol=0, atol=1e-6)
    torch.testing.assert_close(loss, F.mse_loss(old[expected_codes], z))
    torch.testing.assert_close(quantizer.cluster_size.sum(), torch.tensor(0.1 * 40))


def test_kmeans_init_places_codes_on_clusters():
    centres = F.normalize(torch.eye(4, 6), dim=-1)
    generator = torch.Generator().manual_seed(0)
    z = F.normalize(centres.repeat(50, 1) + 0.01 * torch.randn(200, 6, generator=generator), dim=-1)
    quantizer = NormEMAQuantizer(n_codes=4, code_dim=6, kmeans_init=True)
    quantizer.kmeans_init(z, generator=torch.Generator().manual_seed(0))
    similarity = quantizer.embedding.weight @ centres.t()
    assert sorted(similarity.argmax(dim=1).tolist()) == [0, 1, 2, 3]
    assert similarity.max(dim=1).values.min() > 0.99
    assert quantizer.embedding.cluster_size.tolist() == [50.0] * 4


def test_double_banana_keeps_all_16_pairs():
    rows = channel_positions(DOUBLE_BANANA)
    assert len(set(rows)) == 16 and max(rows) < 129
    assert rows == [STANDARD_1020.index(BIPOLAR_MIDPOINTS[pair]) + 1 for pair in DOUBLE_BANANA]
    assert channel_positions(["FP1-F3"]) == channel_positions(["AF3"])
    # the official placement: the first 8 pairs have rows 121-128, the other 8 none
    assert channel_positions(DOUBLE_BANANA[:8], bipolar="official") == list(range(121, 129))
    with pytest.raises(ValueError, match=r"\['FP1-F3'.*bipolar='midpoint'"):
        channel_positions(DOUBLE_BANANA, bipolar="official")


def test_channel_names_are_checked():
    assert channel_positions(["fp1", " Cz "]) == [1, 42]
    with pytest.raises(ValueError, match=r"\['XYZ'\] are not in LaBraM's 10-20 list"):
        channel_positions(["FP1", "xyz"])
    with pytest.raises(ValueError, match=r"\['FP1'\] appear more than once"):
        channel_positions(["FP1", "fp1"])
    with pytest.raises(ValueError, match="'bipolar'"):
        channel_positions(["FP1"], bipolar="first")
    with pytest.raises(TypeError, match="'ch_names'"):
        channel_positions("FP1")


def test_input_checks():
    model = _tiny()
    with pytest.raises(ValueError, match=r"n_chans=4"):
        model(torch.randn(1, 3, 400))
    with pytest.raises(ValueError, match=r"multiple of patch_samples=200.*n_times=450"):
        model(torch.randn(1, 4, 450))
    with pytest.raises(ValueError, match=r"max_patches=16.*n_times=3400"):
        model(torch.randn(1, 4, 3400))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(1, 4, 400, dtype=torch.long))
    with pytest.raises(ValueError, match="'mask'"):
        model(torch.randn(1, 4, 400), torch.zeros(1, 8, dtype=torch.bool))
    pretrain = _tiny("pretrain")
    with pytest.raises(ValueError, match="needs a bool mask"):
        pretrain(torch.randn(1, 4, 400))
    with pytest.raises(ValueError, match=r"n_tokens=8"):
        pretrain(torch.randn(1, 4, 400), torch.zeros(1, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        pretrain(torch.randn(1, 4, 400), torch.zeros(1, 8))


def test_registry_heads_and_overrides():
    assert create_model("labram_base", head="classification", n_outputs=2, depth=1).ch_names == DOUBLE_BANANA
    with pytest.raises(ValueError, match=r"Allowed values for 'vqnsp_tiny' are \('pretrain',\)"):
        create_model("vqnsp_tiny", head="classification", n_outputs=2)
    with pytest.raises(ValueError, match=r"Unknown override\(s\) \['n_chans'\]"):
        create_model("labram_tiny", n_chans=4)
    with pytest.raises(ValueError, match="'max_patches'"):
        create_model("labram_tiny", max_patches=17)
    model = create_model_from_config(
        {"name": "labram_tiny", "depth": 1, "ch_names": CH_NAMES, "tie": None},
        head="classification",
        n_outputs=2,
    )
    assert len(model.blocks) == 1 and model.n_chans == 4


def test_input_contracts():
    contract = get_input_contract("labram_base")
    assert contract is LABRAM_INPUT is get_input_contract("vqnsp_tiny")
    assert (contract.sfreq, contract.patch_samples, contract.max_patches, contract.uv_scale) == (
        200.0,
        200,
        16,
        0.01,
    )
    assert contract.max_times == 3200 and contract.patch_s == 1.0 and not contract.fixed_patches
    assert len(contract.channel_names) == 128 and "FP1-F7" in contract.channel_names
    m4cea = get_input_contract("m4cea_base")
    assert (m4cea.sfreq, m4cea.max_patches, m4cea.fixed_patches, m4cea.uv_scale) == (1000.0, 20, True, None)


def test_reset_classifier_turns_a_pretraining_model_into_a_classifier():
    model = _tiny("pretrain")
    model.reset_classifier(5)
    assert model.head_type == "classification" and not hasattr(model, "lm_head")
    assert {"fc_norm.weight", "head.weight"} <= set(
        model.state_dict()
    ) and "mask_token" not in model.state_dict()
    assert model(torch.randn(2, 4, 200)).shape == (2, 5)


def test_layer_ids_and_no_weight_decay():
    model = _tiny()
    assert model.get_layer_id("module.pos_embed") == 0
    assert model.get_layer_id("patch_embed.conv1.weight") == 0
    assert model.get_layer_id("blocks.1.gamma_2") == 2
    assert model.get_layer_id("head.weight") == 3 == model.get_layer_id("fc_norm.bias")
    with pytest.raises(ValueError, match="lm_head"):
        model.get_layer_id("lm_head.weight")  # a classifier has no lm_head
    assert model.no_weight_decay() == {"pos_embed", "cls_token", "time_embed"}
    assert all(name in dict(model.named_parameters()) for name in model.no_weight_decay())


def test_codebook_usage():
    codes = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    perplexity, n_unused = codebook_usage(codes, 10)
    assert perplexity == pytest.approx(4.0) and n_unused == 6
    assert codebook_usage(torch.zeros(5, dtype=torch.long), 3) == (pytest.approx(1.0), 2)
    with pytest.raises(ValueError, match=r"\[0, 4\).*\[0, 7\]"):
        codebook_usage(torch.tensor([0, 7]), 4)


def test_explicit_and_fused_attention_give_the_same_logits():
    """configure_attention switches LaBraM's layers too (issue 12: one place for every model)."""
    from models.attention import configure_attention

    torch.manual_seed(0)
    model = create_model("labram_tiny", head="classification", n_outputs=3).eval()
    x = torch.randn(2, 16, 400)
    with torch.no_grad():
        assert configure_attention(model, fused=True) == len(model.blocks)
        fused = model(x)
        assert configure_attention(model, fused=False) == len(model.blocks)
        explicit = model(x)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-6)
