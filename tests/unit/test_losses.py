from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mrse.losses import consistency, modality_distillation, sampled_softmax, triplet


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_sampled_softmax_equals_manual_cross_entropy():
    q, i = _unit(3, 4), _unit(3, 4, seed=1)
    log_q = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    ids = torch.tensor([0, 1, 2])
    got = sampled_softmax.compute_loss_from_embeddings(q, i, log_q, ids, temperature=0.5)
    logits = q @ i.T / 0.5 - log_q[None, :]
    want = F.cross_entropy(logits, torch.arange(3))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_log_q_correction_lowers_the_penalty_of_popular_negatives():
    q, i, extra = _unit(4, 8), _unit(4, 8, seed=1), _unit(3, 8, seed=2)
    ids, extra_ids = torch.arange(4), torch.arange(10, 13)
    args = (q, i, torch.zeros(4), ids, extra)
    flat = sampled_softmax.compute_loss_from_embeddings(*args, torch.zeros(3), extra_ids)
    popular = torch.tensor([0.0, 0.0, 5.0])  # extra item 12 is drawn e^5 times more often
    corrected = sampled_softmax.compute_loss_from_embeddings(*args, popular, extra_ids)
    assert corrected < flat


def test_duplicates_of_the_positive_are_not_negatives():
    q = _unit(2, 4)
    item = torch.stack([q[0], q[0]])  # both rows are the same catalog item
    ids = torch.tensor([7, 7])
    loss = sampled_softmax.compute_loss_from_embeddings(
        q, item, torch.zeros(2), ids, temperature=0.1
    )
    # with the duplicate masked, query 0 has no negative left: loss 0 for it
    logits0 = torch.tensor([q[0] @ item[0] / 0.1])
    assert torch.isfinite(loss)
    extra = torch.stack([q[0]])
    loss_extra = sampled_softmax.compute_loss_from_embeddings(
        q, item, torch.zeros(2), ids, extra, torch.zeros(1), torch.tensor([7])
    )
    assert loss_extra.item() == pytest.approx(loss.item(), rel=1e-6)
    assert logits0.numel() == 1


def test_mixed_negatives_add_uniform_items_with_their_log_q():
    q, i, extra = _unit(2, 4), _unit(2, 4, seed=1), _unit(5, 4, seed=2)
    ids, extra_ids = torch.tensor([0, 1]), torch.arange(10, 15)
    lq = torch.full((5,), -math.log(100))
    got = sampled_softmax.compute_loss_from_embeddings(
        q, i, torch.zeros(2), ids, extra, lq, extra_ids, 0.2
    )
    logits = torch.cat([q @ i.T / 0.2, q @ extra.T / 0.2 + math.log(100)], dim=1)
    assert got.item() == pytest.approx(F.cross_entropy(logits, torch.arange(2)).item(), rel=1e-6)


def test_triplet_hinge_and_padding():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[0.8, 0.6]])
    negs = torch.tensor([[[0.9, 0.435889894], [0.0, 1.0]]])
    valid = torch.tensor([[True, True]])
    got = triplet.compute_loss_from_embeddings(q, pos, negs, valid, margin=0.1)
    # hinge: max(0, .1 - .8 + .9) = .2 and max(0, .1 - .8 + 0) = 0 -> mean .1
    assert got.item() == pytest.approx(0.1, abs=1e-6)
    only_first = triplet.compute_loss_from_embeddings(
        q, pos, negs, torch.tensor([[True, False]]), 0.1
    )
    assert only_first.item() == pytest.approx(0.2, abs=1e-6)
    none = triplet.compute_loss_from_embeddings(q, pos, negs, torch.tensor([[False, False]]), 0.1)
    assert none.item() == 0.0


def test_consistency_is_low_for_aligned_views_and_ignores_single_modality_items():
    t = _unit(6, 8)
    both = torch.tensor([True, True, True, True, False, False])
    aligned = consistency.compute_loss_from_embeddings(t, t.clone(), both, 0.1)
    shuffled = consistency.compute_loss_from_embeddings(t, t.roll(1, 0), both, 0.1)
    assert aligned < shuffled
    # rows without both views do not matter
    t2 = t.clone()
    t2[4:] = _unit(2, 8, seed=9)
    assert consistency.compute_loss_from_embeddings(t, t2, both, 0.1).item() == pytest.approx(
        aligned.item()
    )
    assert (
        consistency.compute_loss_from_embeddings(t, t, torch.zeros(6, dtype=torch.bool)).item()
        == 0.0
    )


def test_loss_modules_expose_config():
    assert sampled_softmax.SampledSoftmaxLoss(0.07).get_config_dict() == {"temperature": 0.07}
    assert triplet.HardNegativeTripletLoss(0.2).get_config_dict() == {"margin": 0.2}
    assert consistency.ConsistencyLoss(0.1).get_config_dict() == {"temperature": 0.1}


def test_hybrid_loss_is_the_weighted_sum_of_its_terms():
    """On raw tensors: each term as its own function computes it; weight 0 turns it off."""
    import torch.nn.functional as F

    from mrse.losses.hybrid import HybridLoss, LossBatch

    g = torch.Generator().manual_seed(0)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=g), dim=-1)

    b, m, k, d = 6, 10, 3, 16
    valid = torch.rand(b, k, generator=g) > 0.3
    views = (unit(b, d), unit(b, d), torch.tensor([1, 1, 0, 1, 1, 1]).bool())
    batch = LossBatch(
        query=unit(b, d), positive=unit(b, d), positive_log_q=torch.full((b,), -3.0),
        positive_ids=torch.arange(b), random=unit(m, d), random_log_q=torch.full((m,), -2.0),
        random_ids=torch.arange(100, 100 + m), hard=unit(b, k, d) * valid[..., None],
        hard_valid=valid, views=views,
    )  # fmt: skip
    soft = sampled_softmax.compute_loss_from_embeddings(
        batch.query, batch.positive, batch.positive_log_q, batch.positive_ids,
        batch.random, batch.random_log_q, batch.random_ids, 0.05,
    )  # fmt: skip
    trip = triplet.compute_loss_from_embeddings(
        batch.query, batch.positive, batch.hard, batch.hard_valid, 0.1
    )
    cons = consistency.compute_loss_from_embeddings(*views, 0.1)
    full = HybridLoss(1.0, 0.05, 0.5, 0.1, 0.2, 0.1)(batch)
    torch.testing.assert_close(full, soft + 0.5 * trip + 0.2 * cons)
    torch.testing.assert_close(HybridLoss(1.0, 0.05, 0.0, 0.1, 0.0, 0.1)(batch), soft)
    no_views = LossBatch(**{**batch.__dict__, "views": None, "hard": None})
    torch.testing.assert_close(HybridLoss(1.0, 0.05, 0.5, 0.1, 0.2, 0.1)(no_views), soft)
    assert HybridLoss().get_config_dict()["triplet_weight"] == 0.5
    teacher = unit(b, d)
    pairs = [(unit(b, d), teacher), (unit(b, d), unit(b, d))]
    distilled = LossBatch(**{**batch.__dict__, "distill": pairs})
    dist = modality_distillation.compute_loss_from_embeddings(pairs, 0.05)
    torch.testing.assert_close(
        HybridLoss(1.0, 0.05, 0.5, 0.1, 0.2, 0.1, 0.3, 0.05)(distilled), full + 0.3 * dist
    )


def test_modality_distillation_pulls_partial_views_to_their_own_full_view_only():
    """Low when each photo-only / text-only view sits on its own item's full view; high when
    the views are swapped between items; the full view (teacher) gets no gradient."""
    g = torch.Generator().manual_seed(0)
    full = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    near = F.normalize(full + 0.05 * torch.randn(8, 16, generator=g), dim=-1)
    aligned = modality_distillation.compute_loss_from_embeddings([(near, full)] * 2, 0.05)
    swapped = modality_distillation.compute_loss_from_embeddings([(near.flip(0), full)], 0.05)
    assert aligned < 0.1 < swapped
    teacher = full.clone().requires_grad_(True)
    student = near.clone().requires_grad_(True)
    modality_distillation.compute_loss_from_embeddings([(student, teacher)], 0.05).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    one = modality_distillation.compute_loss_from_embeddings([(near[:1], full[:1])], 0.05)
    assert one == 0.0
