"""Edge-weighted propagation kernels for DCCF's adaptive augmentation and IRLLRec's intent branch, compared.

Computes r = G x with G[h, t] = a_ht / sum_t' a_ht', a_ht = (1 + cos(c_h, c_t)) / 2 over the symmetric training
graph (forward and backward), with each of DGL's options and a plain-torch gather/scatter, on a prepared dataset:

    python benchmarks/edge_weighted.py --dataset amazon --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import recrepro  # noqa: F401  (first: it selects DGL's backend before DGL is imported)

# isort: split
import dgl.function as fn
import torch
import torch.nn.functional as F
from dgl.nn.functional import edge_softmax

from recrepro.data.canonical import load_canonical
from recrepro.data.cards import load_card
from recrepro.graph import InteractionGraph
from recrepro.paths import canonical_dir


def alpha_dgl(graph, c):
    with graph.local_scope():
        graph.ndata["n"] = F.normalize(c)
        graph.apply_edges(fn.u_dot_v("n", "n", "cos"))
        return (graph.edata["cos"] + 1) / 2


def option_copy_e_then_u_mul_e(graph, c, x):
    """alpha; row sums with copy_e+sum; normalised weights with e_div_v; u_mul_e+sum."""
    with graph.local_scope():
        graph.edata["a"] = alpha_dgl(graph, c)
        graph.update_all(fn.copy_e("a", "m"), fn.sum("m", "s"))
        graph.apply_edges(fn.e_div_v("a", "s", "w"))
        graph.ndata["x"] = x
        graph.update_all(fn.u_mul_e("x", "w", "m"), fn.sum("m", "r"))
        return graph.ndata["r"]


def option_edge_softmax(graph, c, x):
    """normalised weights as edge_softmax(log alpha); u_mul_e+sum."""
    with graph.local_scope():
        graph.edata["w"] = edge_softmax(graph, torch.log(alpha_dgl(graph, c)))
        graph.ndata["x"] = x
        graph.update_all(fn.u_mul_e("x", "w", "m"), fn.sum("m", "r"))
        return graph.ndata["r"]


def option_concat_ones(graph, c, x):
    """one u_mul_e/sum pass over [x, 1]: the weighted sum and the row normaliser together."""
    with graph.local_scope():
        graph.edata["a"] = alpha_dgl(graph, c)
        graph.ndata["x"] = torch.cat([x, x.new_ones(x.shape[0], 1)], 1)
        graph.update_all(fn.u_mul_e("x", "a", "m"), fn.sum("m", "r"))
        out = graph.ndata["r"]
        return out[:, :-1] / out[:, -1:].clamp(min=torch.finfo(out.dtype).tiny)  # isolated nodes give 0


def option_torch_scatter(graph, c, x):
    """the reference's formulation: gather both ends, weight, index_add (no DGL kernels)."""
    src, dst = graph.edges()
    n = F.normalize(c)
    alpha = ((n[src] * n[dst]).sum(1) + 1) / 2
    sums = alpha.new_zeros(graph.num_nodes()).index_add(0, dst, alpha)
    weights = alpha / sums[dst]
    return torch.zeros_like(x).index_add(0, dst, x[src] * weights[:, None])


HARNESS_GRAPH: dict = {}  # the DGL graph -> the harness's InteractionGraph around it

OPTIONS = {
    "u_dot_v + copy_e/sum + e_div_v + u_mul_e/sum": option_copy_e_then_u_mul_e,
    "u_dot_v + edge_softmax(log a) + u_mul_e/sum": option_edge_softmax,
    "torch gather + index_add (reference style)": option_torch_scatter,
    "u_dot_v + one u_mul_e/sum over [x, 1] (sum and normaliser together)": option_concat_ones,
    "u_dot_v + CSR products, backward written out (the harness's choice, InteractionGraph.adaptive_propagate)": (
        lambda g, c, x: HARNESS_GRAPH[g].adaptive_propagate(c, x)
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    data = load_canonical(canonical_dir(args.dataset), load_card(args.dataset))
    interactions = InteractionGraph(data)
    graph = interactions.graph
    HARNESS_GRAPH[graph] = interactions
    torch.manual_seed(0)
    c = torch.randn(graph.num_nodes(), args.dim, requires_grad=True)
    x = torch.randn(graph.num_nodes(), args.dim, requires_grad=True)
    reference = option_torch_scatter(graph, c, x)
    lines = [
        f"Edge-weighted propagation on {args.dataset}: {graph.num_nodes()} nodes, {graph.num_edges()} directed "
        f"edges, dim {args.dim}, forward + backward, median of {args.rounds} rounds of {args.repeats} calls.",
        f"Command: `python benchmarks/edge_weighted.py {' '.join(sys.argv[1:])}`",
        "",
        "| option | ms per call | max abs diff vs reference style |",
        "|---|---|---|",
    ]
    timings = {name: [] for name in OPTIONS}
    for _ in range(args.rounds):  # interleaved rounds, so that machine noise hits every option alike
        for name, fn_ in OPTIONS.items():
            fn_(graph, c, x).square().sum().backward()  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                fn_(graph, c, x).square().sum().backward()
            timings[name].append((time.perf_counter() - start) / args.repeats * 1000)
    for name, fn_ in OPTIONS.items():
        diff = (fn_(graph, c, x) - reference).abs().max().item()
        lines.append(f"| {name} | {statistics.median(timings[name]):.1f} | {diff:.1e} |")
    print("\n".join(lines))
    if args.out:
        from recrepro.atomic import write_text

        write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
