"""The evaluator against hand-computed cases and a per-user brute-force implementation of the reference."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recrepro.evaluation import Evaluator


def matrix(pairs, shape):
    rows, cols = zip(*pairs) if pairs else ((), ())
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def scorer(item_scores):
    """Embeddings whose inner products give each user the listed item scores."""
    item_scores = torch.tensor(item_scores, dtype=torch.float64)
    return torch.eye(item_scores.shape[0], dtype=torch.float64), item_scores.T.contiguous()


def test_validation_items_stay_candidates_at_test_time():
    # user 0: train {0}, val {1}, test {2, 3}; scores rank 0 > 1 > 2 > 4 > 5 > 3
    train = matrix([(0, 0)], (1, 6))
    val = matrix([(0, 1)], (1, 6))
    test = matrix([(0, 2), (0, 3)], (1, 6))
    users, items = scorer([[10, 9, 8, 1, 7, 6]])

    result = Evaluator(train, test, ks=(2, 5)).evaluate(users, items)

    # ranking without the training item: 1 (val, a miss), 2 (hit), 4, 5, 3 (hit)
    assert result["recall@2"] == pytest.approx(1 / 2)
    assert result["recall@5"] == pytest.approx(1.0)
    idcg2 = 1 + 1 / math.log2(3)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg2)
    assert result["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(6)) / idcg2)
    # and validation: the test items stay candidates there
    val_result = Evaluator(train, val, ks=(1,)).evaluate(users, items)
    assert val_result["recall@1"] == pytest.approx(1.0)


def test_recall_denominator_is_number_of_targets_and_idcg_uses_min_k():
    train = matrix([], (1, 5))
    test = matrix([(0, 0), (0, 1), (0, 2)], (1, 5))
    users, items = scorer([[5, 0, 0, 0, 4]])  # item 0 first, then item 4 (miss)

    result = Evaluator(train, test, ks=(1, 2)).evaluate(users, items)

    assert result["recall@1"] == pytest.approx(1 / 3)  # not 1/min(1, 3)
    assert result["ndcg@1"] == pytest.approx(1.0)  # ideal DCG over min(K, |T|) = 1 hit
    assert result["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_only_users_with_targets_are_averaged():
    train = matrix([(0, 0), (1, 0), (2, 1)], (3, 4))
    test = matrix([(0, 1), (2, 2)], (3, 4))  # user 1 has no test item
    users, items = scorer([[0, 9, 1, 1], [0, 0, 0, 0], [0, 9, 1, 5]])

    result = Evaluator(train, test, ks=(1,)).evaluate(users, items)

    assert result.users.tolist() == [0, 2]
    assert result.per_user["recall@1"].tolist() == [1.0, 0.0]  # user 2: item 1 is masked, item 3 wins
    assert result["recall@1"] == pytest.approx(0.5)


def brute_force(train, target, user_emb, item_emb, k):
    """Per-user implementation of the reference metric code (masking with -1e8, as the reference does)."""
    scores = (user_emb @ item_emb.T).numpy()
    recalls, ndcgs = [], []
    for u in range(train.shape[0]):
        truth = set(target[u].indices)
        if not truth:
            continue
        s = scores[u] * (1 - train[u].toarray()[0]) - 1e8 * train[u].toarray()[0]
        top = np.argsort(-s, kind="stable")[:k]
        hits = np.array([i in truth for i in top], dtype=float)
        recalls.append(hits.sum() / len(truth))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(truth))))
        ndcgs.append((hits / np.log2(np.arange(2, k + 2))).sum() / idcg)
    return np.mean(recalls), np.mean(ndcgs)


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_matches_brute_force_reference_on_random_data(batch_size):
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 60
    keys = rng.choice(n_users * n_items, size=700, replace=False)
    pairs = np.stack([keys // n_items, keys % n_items], 1)
    train, val, test = (matrix([tuple(p) for p in part], (n_users, n_items)) for part in np.split(pairs, [400, 550]))
    user_emb = torch.from_numpy(rng.normal(size=(n_users, 8)))
    item_emb = torch.from_numpy(rng.normal(size=(n_items, 8)))  # continuous scores: no ties

    result = Evaluator(train, test, ks=(5, 10, 20), batch_size=batch_size).evaluate(user_emb, item_emb)

    for k in (5, 10, 20):
        recall, ndcg = brute_force(train, test, user_emb, item_emb, k)
        assert result[f"recall@{k}"] == pytest.approx(recall, abs=1e-12)
        assert result[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-12)
    assert val.nnz == 150


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        Evaluator(matrix([], (2, 3)), matrix([], (2, 4)))
