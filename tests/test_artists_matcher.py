"""The matcher's maths on synthetic embeddings with a planted hub artist."""

import pytest
import torch

from tests.artists_synthetic import planted_hub
from logic.artists.matcher import ArtistIndex


@pytest.fixture(scope="module")
def planted():
    return planted_hub(k=12, dim=64, bank_size=200, seed=0)


def top1(index, prompts):
    return (index.score_prompts(prompts).argmax(1) == torch.arange(len(index.names))).float().mean().item()


def test_naive_recipe_lets_the_hub_win_most_prompts(planted):
    names, images, bank, truth = planted
    index = ArtistIndex(names, images, bank, method="naive")
    assert next(iter(index.win_shares())) == "Artist 00"
    assert index.win_shares()["Artist 00"] > 0.8


@pytest.mark.parametrize("method", ["centred", "zscore", "csls"])
def test_debiasing_brings_the_hub_near_one_in_k_and_keeps_true_matches(planted, method):
    names, images, bank, truth = planted
    index = ArtistIndex(names, images, bank, method=method)
    assert max(index.win_shares().values()) < 2.0 / len(names)
    assert top1(index, truth) == 1.0


def test_held_out_generic_prompts_are_spread_too(planted):
    names, images, bank, _ = planted
    held_out = planted_hub(k=12, dim=64, bank_size=400, seed=0)[2][200:]
    index = ArtistIndex(names, images, bank, method="zscore")
    assert max(index.win_shares(index.score_prompts(held_out)).values()) < 2.5 / len(names)


def test_fusion_with_text_prototypes_keeps_true_matches(planted):
    names, images, bank, truth = planted
    text_protos = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    index = ArtistIndex(names, images, bank, text_protos, method="zscore", fusion=0.3)
    assert len(index.components) == 2
    assert top1(index, truth) == 1.0


def test_rank_gives_top_k_scores_and_confidence(planted):
    names, images, bank, truth = planted
    index = ArtistIndex(names, images, bank, method="zscore")
    ranking = index.rank(truth[3], top=5)
    assert ranking.best == "Artist 03" and len(ranking.names) == 5
    assert ranking.scores == sorted(ranking.scores, reverse=True)
    assert ranking.confidence > 0.9  # a true match is clearer than almost every generic prompt
    assert index.rank(bank[0]).confidence < ranking.confidence


def test_confidence_is_a_share_of_the_bank(planted):
    names, images, bank, _ = planted
    index = ArtistIndex(names, images, bank)
    assert index.confidence(-1e9) == 0.0 and index.confidence(1e9) == 1.0
    confidences = [index.rank(p).confidence for p in bank]
    assert 0.4 < sum(confidences) / len(confidences) < 0.6


def test_image_queries_find_their_artist(planted):
    names, images, bank, _ = planted
    index = ArtistIndex(names, [x[1:] for x in images], bank)
    held_out = torch.stack([x[0] for x in images])
    assert (index.score_images(held_out).argmax(1) == torch.arange(len(names))).float().mean() >= 0.75


def test_one_artist_is_enough():
    index = ArtistIndex(["Solo"], [torch.randn(3, 8)], torch.randn(10, 8))
    assert index.rank(torch.randn(8)).names == ["Solo"]
