"""Every registered method on a tiny graph, the chunked translation loss, and IRLLRec's ablation switches."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import clustered_interactions, synthetic_extras

from recrepro.config import resolve_config
from recrepro.nn import ssl_con_loss
from recrepro.registry import get_method, list_methods
from recrepro.trainer import build_model, seed_everything


@pytest.fixture(scope="module")
def toy():
    return clustered_interactions(n_users=40, n_items=60, seed=1)


def cases():
    return [
        pytest.param(name, preset, id=f"{name}-{preset}")
        for name in list_methods()
        for preset in ["faithful", *get_method(name).presets]
    ]


def batch(data, size=64):
    index = torch.from_numpy(np.random.default_rng(0).choice(len(data.train), size, replace=False))
    users = torch.from_numpy(data.train[:, 0])[index]
    pos = torch.from_numpy(data.train[:, 1])[index]
    neg = torch.from_numpy(np.random.default_rng(1).integers(0, data.n_items, size))
    return users, pos, neg


def make(method, toy, preset="faithful", **model):
    seed_everything(0)
    config = resolve_config(method, "toy", preset=preset, overrides={"model": model})
    return build_model(config, toy, torch.device("cpu"), synthetic_extras)


def teacher_parameters(model):
    teacher = getattr(model.addon, "teacher", None) if getattr(model, "addon", None) is not None else None
    return {id(p) for p in teacher.parameters()} if teacher is not None else set()


@pytest.mark.parametrize("method, preset", cases())
def test_every_method_trains_on_a_tiny_graph(method, preset, toy):
    model = make(method, toy, preset)
    model.eval()
    with torch.no_grad():
        users_emb, items_emb = model.embeddings()
    assert users_emb.shape[0] == toy.n_users and items_emb.shape[0] == toy.n_items
    assert users_emb.shape[1] == items_emb.shape[1]

    model.train()
    users, pos, neg = batch(toy)
    torch.manual_seed(1)
    terms = model.loss(users, pos, neg)
    assert torch.isfinite(terms["loss"]) and all(torch.isfinite(v) for v in terms.values())
    assert terms["loss"].item() == pytest.approx(sum(v.item() for k, v in terms.items() if k != "loss"), rel=1e-5)
    terms["loss"].backward()
    frozen = teacher_parameters(model)
    for name, param in model.named_parameters():
        if id(param) in frozen:
            assert param.grad is None, f"the momentum teacher got a gradient ({name})"
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all(), f"{name} got no gradient"
            assert param.grad.abs().sum() > 0, f"{name} got a zero gradient"

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    optimizer.step()
    torch.manual_seed(1)
    assert model.loss(users, pos, neg)["loss"] < terms["loss"]


def reference_ssl_con_loss(x, y, temperature):
    """The reference's ssl_con_loss, transcribed with plain autograd (the formula our blocked version must match)."""
    x, y = F.normalize(x), F.normalize(y)
    positive = torch.exp((x * y).sum(1) / temperature)
    total = torch.exp(x @ y.T / temperature).sum(1)
    return -torch.log(positive / (total + 1e-8) + 1e-8).mean()


@pytest.mark.parametrize("block, temperature", [(4096, 1.0), (64, 1.0), (64, 0.2), (77, 0.5)])
def test_blocked_ssl_con_loss_equals_the_reference_formula_in_value_and_gradient(block, temperature):
    torch.manual_seed(0)
    x = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(300, 16, dtype=torch.float64)
    expected = reference_ssl_con_loss(x * (1 + noise), y, temperature)
    expected_grads = torch.autograd.grad(expected, (x, y))
    got = ssl_con_loss(x * (1 + noise), y, temperature, block=block)
    got_grads = torch.autograd.grad(got, (x, y))
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    for g, e in zip(got_grads, expected_grads):
        assert torch.allclose(g, e, rtol=1e-10, atol=1e-14)


def test_ssl_con_loss_against_a_constant_target_gives_the_same_gradient_and_skips_the_target_product(monkeypatch):
    """RLMRec-Gen's target (the LLM profiles) is a constant: x's gradient is unchanged, no N x M x D product for y."""
    torch.manual_seed(0)
    x = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randn(300, 16, dtype=torch.float64)
    expected = torch.autograd.grad(reference_ssl_con_loss(x, y, 0.5), x)[0]
    products = []
    monkeypatch.setattr(torch.Tensor, "addmm_", lambda self, *a, **k: products.append(1) or self, raising=False)
    got = torch.autograd.grad(ssl_con_loss(x, y, 0.5, block=64), x)[0]
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-14) and not products


def irllrec_terms(toy, preset="paper", **switches):
    model = make("lightgcn-irllrec", toy, preset, **switches)
    model.train()
    torch.manual_seed(5)
    return {k: v.item() for k, v in model.loss(*batch(toy)).items()}


@pytest.mark.parametrize(
    "switch, removed",
    [("intent_alignment", "kd_int"), ("translation_alignment", "translation"), ("interaction_text_matching", "itm")],
)
def test_each_irllrec_ablation_switch_removes_its_term(toy, switch, removed):
    full = irllrec_terms(toy)
    ablated = irllrec_terms(toy, **{switch: False})
    assert removed in full and full[removed] != 0
    assert removed not in ablated
    config = resolve_config("lightgcn-irllrec", "toy", preset="paper")
    expected = dict(full)
    expected.pop(removed)
    if removed == "translation":  # the matching term loses its translation share too
        expected["itm"] -= config.model.itm_weight * 0.4 * full["translation"]
    expected["loss"] = sum(v for k, v in expected.items() if k != "loss")
    assert ablated == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_the_carried_teacher_product_gives_the_losses_of_the_direct_one(toy):
    """IRLLRec carries its momentum teacher's first-layer product from step to step; setting the mode before
    every step (which drops it) computes it directly each time: both give the same losses and weights."""

    def train(reanchor_every_step: bool) -> tuple[list[dict], torch.nn.Module]:
        model = make("lightgcn-irllrec", toy, "paper")
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(5)
        model.train()
        history = []
        for _ in range(12):
            if reanchor_every_step:
                model.train()
            model.before_step()
            terms = model.loss(*batch(toy))
            optimizer.zero_grad()
            terms["loss"].backward()
            optimizer.step()
            history.append({k: v.item() for k, v in terms.items()})
        return history, model

    carried, carried_model = train(reanchor_every_step=False)
    direct, direct_model = train(reanchor_every_step=True)
    assert carried_model.addon._teacher_product is not None  # it was carried, not recomputed
    for step_carried, step_direct in zip(carried, direct):
        assert step_carried == pytest.approx(step_direct, rel=1e-5, abs=1e-12)
    for (name, a), b in zip(carried_model.state_dict().items(), direct_model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
    teacher = carried_model.addon.teacher
    exact = teacher(carried_model.addon.intent_alignment.text)
    first, activation, second = teacher
    assert torch.allclose(second(activation(carried_model.addon._teacher_product + first.bias)), exact, atol=1e-5)


def test_faithful_irllrec_terms_are_practically_inactive(toy):
    faithful = irllrec_terms(toy, preset="faithful")
    assert faithful["translation"] < 1e-5 * faithful["loss"] and faithful["itm"] < 1e-5 * faithful["loss"]


def test_info_nce_matches_the_reference_formula_in_value_and_gradient():
    from recrepro.nn import info_nce

    torch.manual_seed(0)
    anchor = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(70, 8, dtype=torch.float64, requires_grad=True)
    positive = candidates[:50]

    def reference(a, p, c, t):  # the reference's cal_infonce_loss, written out
        norm = lambda x: x / torch.sqrt(1e-8 + x.square().sum(-1, keepdim=True))  # noqa: E731
        a, p, c = norm(a), norm(p), norm(c)
        return (-(a * p / t).sum(-1) + torch.log(torch.exp(a @ c.T / t).sum(-1))).sum()

    for temperature in (0.05, 0.2, 1.0):
        ours = info_nce(anchor, positive, candidates, temperature)
        theirs = reference(anchor, positive, candidates, temperature)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
        for got, expected in zip(
            torch.autograd.grad(ours, (anchor, candidates)), torch.autograd.grad(theirs, (anchor, candidates))
        ):
            assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_text_alignment_with_repeated_items_equals_the_reference_formula():
    from recrepro.components import TextAlignment
    from recrepro.nn import info_nce

    torch.manual_seed(0)
    users_text, items_text = torch.randn(20, 12, dtype=torch.float64), torch.randn(15, 12, dtype=torch.float64)
    alignment = TextAlignment(users_text, items_text, 6, weight=0.5, temperature=0.2).double()
    user_emb = torch.randn(20, 6, dtype=torch.float64, requires_grad=True)
    item_emb = torch.randn(15, 6, dtype=torch.float64, requires_grad=True)
    users, pos, neg = torch.randint(0, 20, (40,)), torch.randint(0, 15, (40,)), torch.randint(0, 15, (40,))

    ours = alignment(user_emb, item_emb, users, pos, neg)
    project = alignment.projector
    pu, pp, pn = project(users_text), project(items_text[pos]), project(items_text[neg])  # the reference's way
    theirs = (
        0.5
        * (
            info_nce(user_emb[users], pu[users], pu, 0.2)
            + info_nce(item_emb[pos], pp, pp, 0.2)
            + info_nce(item_emb[neg], pn, pn, 0.2)
        )
        / 40
    )
    # the same with f(text) of every user and item passed in, as IRLLRec passes it
    given = alignment(user_emb, item_emb, users, pos, neg, project(torch.cat([users_text, items_text])))
    params = [user_emb, item_emb, *project.parameters()]
    expected = torch.autograd.grad(theirs, params, retain_graph=True)
    for loss in (ours, given):
        assert loss.item() == pytest.approx(theirs.item(), rel=1e-12)
        for got, want in zip(torch.autograd.grad(loss, params), expected):
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_l2_normalize_matches_torch():
    from recrepro.nn import l2_normalize

    x = torch.randn(30, 7, dtype=torch.float64, requires_grad=True)
    x.data[3] = 0  # a zero row stays zero
    ours, theirs = l2_normalize(x), torch.nn.functional.normalize(x)
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert torch.allclose(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(theirs.sum(), x)[0], rtol=1e-9)


def test_propagation_and_edge_dropout_equal_the_dense_normalised_adjacency():
    """``propagate`` over the full graph and over an edge-dropped copy against dense D^-1/2 A D^-1/2 (masked, not
    re-normalised, as the reference's dropout), in value and gradient, on a graph with isolated nodes."""
    from recrepro.data.canonical import InteractionData
    from recrepro.graph import InteractionGraph

    rng = np.random.default_rng(1)
    pairs = np.unique(np.stack([rng.integers(0, 7, 30), rng.integers(0, 9, 30)], 1), axis=0)
    graph = InteractionGraph(InteractionData("t", 8, 10, pairs, pairs[:2], pairs[:2]))  # user 7, item 9 isolated
    degree = torch.zeros(graph.n_nodes).index_add_(0, graph.dst, torch.ones(graph.n_edges))
    norm = torch.where(degree > 0, degree.clamp(min=1).pow(-0.5), 0.0)
    torch.manual_seed(0)
    keep = torch.rand(graph.n_edges) < 0.5
    torch.manual_seed(0)
    dropped = graph.drop_edges(0.5)  # the same draw
    assert 0 < int(keep.sum()) < graph.n_edges
    for adjacency, kept in ((None, torch.ones_like(keep)), (dropped, keep)):
        expected = torch.zeros(graph.n_nodes, graph.n_nodes)
        expected[graph.dst[kept], graph.src[kept]] = norm[graph.dst[kept]] * norm[graph.src[kept]]
        x = torch.randn(graph.n_nodes, 4, requires_grad=True)
        ours = graph.propagate(x, adjacency)
        torch.testing.assert_close(ours, expected @ x)
        g = torch.randn_like(ours)
        torch.testing.assert_close(torch.autograd.grad((ours * g).sum(), x)[0], expected.T @ g)
        assert ours[7].abs().sum() == 0 and ours[8 + 9].abs().sum() == 0


def test_adaptive_propagation_equals_the_reference_formula_in_value_and_gradient():
    """DCCF's adaptive augmentation (hand-written backward) against the reference's gather / index_add form, in
    float64, on a graph with isolated nodes."""
    from recrepro.data.canonical import InteractionData
    from recrepro.graph import InteractionGraph

    rng = np.random.default_rng(0)
    pairs = np.unique(np.stack([rng.integers(0, 7, 30), rng.integers(0, 9, 30)], 1), axis=0)
    graph = InteractionGraph(InteractionData("t", 8, 10, pairs, pairs[:2], pairs[:2]))  # user 7, item 9 isolated
    generator = torch.Generator().manual_seed(0)
    c, x = (torch.randn(graph.n_nodes, 5, dtype=torch.float64, generator=generator, requires_grad=True) for _ in "cx")

    def reference(c, x):
        n = F.normalize(c)
        alpha = ((n[graph.dst] * n[graph.src]).sum(1) + 1) / 2
        sums = alpha.new_zeros(graph.n_nodes).index_add(0, graph.dst, alpha)
        return torch.zeros_like(x).index_add(0, graph.dst, x[graph.src] * (alpha / sums[graph.dst])[:, None])

    ours, ref = graph.adaptive_propagate(c, x), reference(c, x)
    torch.testing.assert_close(ours, ref)
    assert ours[7].abs().sum() == 0 and ours[8 + 9].abs().sum() == 0
    weights = torch.randn(ref.shape, dtype=torch.float64, generator=generator)
    for mine, theirs in zip(
        torch.autograd.grad((ours * weights).sum(), (c, x)), torch.autograd.grad((ref * weights).sum(), (c, x))
    ):
        torch.testing.assert_close(mine, theirs)
    assert torch.autograd.gradcheck(graph.adaptive_propagate, (c, x))
