"""LightGCN's propagation on a dataset: DGL's ``copy_u`` + ``sum`` against a pair of torch CSR products.

    python benchmarks/propagation.py --dataset amazon --threads 2 --out results/performance/propagation.md

Times ``--layers`` propagation steps forward and backward (features ``[N, --dim]``), over the full normalised
graph and over an edge-dropped copy with a new mask each call (LightGCN's training step), and prints a markdown
table: milliseconds per call for
- DGL: D^-1/2 scaling around an unweighted ``copy_u`` + ``sum`` pass; the dropped copy is ``dgl.edge_subgraph``;
- CSR: the harness's ``InteractionGraph.propagate``: torch CSR products with the normalised (and masked) entries,
  the transpose built with the matrix for the backward pass.
Both draw the same mask, and the table says how far their outputs and gradients differ. Run it on an otherwise
idle machine; the rounds alternate the two so that a change in load shows as spread, not as a difference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import dgl
import dgl.function as fn
import torch

from recrepro.data.canonical import load_canonical
from recrepro.graph import InteractionGraph
from recrepro.paths import canonical_dir


def dgl_propagate(graph: InteractionGraph, features: torch.Tensor, subgraph: dgl.DGLGraph) -> torch.Tensor:
    with subgraph.local_scope():
        subgraph.srcdata["h"] = features * graph.norm
        subgraph.update_all(fn.copy_u("h", "m"), fn.sum("m", "h"))
        return subgraph.dstdata["h"] * graph.norm


def dgl_step(graph: InteractionGraph, keep_rate: float | None, layers: int) -> Callable:
    def run(x: torch.Tensor) -> torch.Tensor:
        subgraph = graph.graph
        if keep_rate is not None:
            keep = torch.rand(graph.n_edges) < keep_rate
            subgraph = dgl.edge_subgraph(graph.graph, keep.nonzero().squeeze(1), relabel_nodes=False, store_ids=False)
        total = layer = x
        for _ in range(layers):
            layer = dgl_propagate(graph, layer, subgraph)
            total = total + layer
        return total

    return run


def csr_step(graph: InteractionGraph, keep_rate: float | None, layers: int) -> Callable:
    def run(x: torch.Tensor) -> torch.Tensor:
        adjacency = graph.adjacency if keep_rate is None else graph.drop_edges(keep_rate)
        total = layer = x
        for _ in range(layers):
            layer = graph.propagate(layer, adjacency)
            total = total + layer
        return total

    return run


def forward_backward(step: Callable, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = x.detach().requires_grad_()
    out = step(x)
    out.pow(2).sum().backward()
    return out.detach(), x.grad


def milliseconds(step: Callable, x: torch.Tensor, repeats: int) -> float:
    x = x.detach().requires_grad_()
    start = time.perf_counter()
    for _ in range(repeats):
        step(x).sum().backward()
    return (time.perf_counter() - start) / repeats * 1e3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--keep-rate", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    graph = InteractionGraph(load_canonical(canonical_dir(args.dataset)))
    x = torch.randn(graph.n_nodes, args.dim, generator=torch.Generator().manual_seed(0))
    lines = [
        f"# Propagation: DGL copy_u + sum vs torch CSR products, {args.dataset}\n",
        f"{graph.n_nodes:,} nodes, {graph.n_edges:,} directed edges, dim {args.dim}, {args.layers} layers forward "
        f"and backward, {args.threads} thread(s), best of {args.rounds} rounds of {args.repeats} calls.\n",
        "| graph | DGL ms | CSR ms | DGL / CSR | largest difference (output, gradient) |",
        "|---|---|---|---|---|",
    ]
    for label, keep_rate in (("full", None), (f"edges dropped (keep {args.keep_rate})", args.keep_rate)):
        steps = {name: make(graph, keep_rate, args.layers) for name, make in (("dgl", dgl_step), ("csr", csr_step))}
        (out_a, grad_a), (out_b, grad_b) = (forward_backward(step, x, seed=0) for step in steps.values())
        difference = f"{(out_a - out_b).abs().max():.1e}, {(grad_a - grad_b).abs().max():.1e}"
        for step in steps.values():
            milliseconds(step, x, 3)  # warm-up: DGL's formats, allocator
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                times[name].append(milliseconds(step, x, args.repeats))
        best = {name: min(values) for name, values in times.items()}
        lines.append(
            f"| {label} | {best['dgl']:.2f} | {best['csr']:.2f} | {best['dgl'] / best['csr']:.2f}x | {difference} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from recrepro.atomic import write_text

        write_text(args.out, text)


if __name__ == "__main__":
    main()
