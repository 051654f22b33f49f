"""The user-item interaction graph on DGL, with the propagation kernels the methods share.

Nodes are users ``0..U-1`` followed by items ``U..U+I-1``; each training interaction is stored as two
directed edges. Propagation over D^-1/2 A D^-1/2 (and its edge-dropped copies) is a pair of torch CSR products,
the matrix for the forward pass and its transpose for the backward one: on CPU that is faster than DGL's
``copy_u`` + ``sum`` pass over a subgraph built for every dropout mask (``benchmarks/propagation.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import dgl
import numpy as np
import torch
import torch.nn.functional as F

from recrepro.data.canonical import InteractionData

# torch marks its sparse CSR tensors as beta and says so on first use; they are used here for plain products
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)

# DGL's CUDA build for the pinned torch (2.2.1, CUDA 12.1); PyPI's dgl wheel is CPU-only
DGL_CUDA_INSTALL = (
    "pip install --force-reinstall --no-deps 'dgl==2.1.0+cu121' -f https://data.dgl.ai/wheels/torch-2.2/cu121/repo.html"
)


def dgl_has_cuda() -> bool:
    """Whether the installed DGL was built with CUDA (its GPU device API is registered)."""
    from dgl._ffi.function import list_global_func_names

    return "device_api.gpu" in list_global_func_names()


class InteractionGraph:
    """Symmetric bipartite graph of the training interactions.

    Attributes:
        graph: the DGL graph (2|R| edges; edge ``e`` and ``e + |R|`` are the two directions of one pair).
        norm: ``[N, 1]`` D^-1/2 of the full graph (0 for isolated nodes).
    """

    def __init__(self, data: InteractionData, device: torch.device | str = "cpu") -> None:
        self.n_users, self.n_items = data.n_users, data.n_items
        self.n_nodes = data.n_nodes
        self.device = torch.device(device)
        users = torch.from_numpy(data.train[:, 0].astype(np.int64))
        items = torch.from_numpy(data.train[:, 1].astype(np.int64)) + self.n_users
        self.src = torch.cat([users, items]).to(self.device)
        self.dst = torch.cat([items, users]).to(self.device)
        self.graph = dgl.graph((self.src, self.dst), num_nodes=self.n_nodes, device=self.device)
        degree = self.graph.in_degrees().float()
        self.norm = torch.where(degree > 0, degree.clamp(min=1).pow(-0.5), torch.zeros_like(degree)).unsqueeze(1)

    @property
    def n_edges(self) -> int:
        return self.graph.num_edges()

    @cached_property
    def edge_norm(self) -> torch.Tensor:
        """Per edge ``t -> h`` (edge order), the entry ``d_h^-1/2 d_t^-1/2`` of the normalised adjacency."""
        return (self.norm[self.dst] * self.norm[self.src]).squeeze(1)

    @cached_property
    def adjacency(self) -> Adjacency:
        """D^-1/2 A D^-1/2 of the full graph."""
        return self.weighted(self.edge_norm)

    def weighted(self, edge_weights: torch.Tensor) -> Adjacency:
        """The adjacency with ``edge_weights`` (edge order) as its entries."""
        return Adjacency(self._sparse(edge_weights, "dst"), self._sparse(edge_weights, "src"))

    def drop_edges(self, keep_rate: float) -> Adjacency:
        """The normalised adjacency with each directed edge kept independently with probability ``keep_rate``.

        This is the reference's edge dropout: entries of the normalised adjacency are masked with no rescaling
        and no re-normalisation (the norms stay the full graph's).
        """
        if keep_rate >= 1.0:
            return self.adjacency
        keep = torch.rand(self.n_edges, device=self.device) < keep_rate
        return self.weighted(self.edge_norm * keep)

    def propagate(self, features: torch.Tensor, adjacency: Adjacency | None = None) -> torch.Tensor:
        """One step of ``adjacency`` ``features`` (default: D^-1/2 A D^-1/2 of the full graph)."""
        return _Product.apply(features, self.adjacency if adjacency is None else adjacency)

    def adaptive_propagate(self, similarity_features: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """DCCF's adaptive augmentation: ``r = G x`` with ``G[h, t] = a_ht / sum_t' a_ht'`` and
        ``a_ht = (1 + cos(c_h, c_t)) / 2`` over the edges ``t -> h`` of the full graph; rows whose weights sum
        to 0 give 0. Forward and backward are written out with torch's CSR products and DGL's ``u_dot_v``
        (several times faster on CPU than composing DGL's edge-weighted kernels; ``benchmarks/edge_weighted.py``).
        """
        return _AdaptivePropagate.apply(F.normalize(similarity_features), features, self)

    @cached_property
    def _csr(self) -> dict[str, torch.Tensor]:
        """The edges sorted by destination (rows of the forward sum) and by source (rows of its transpose)."""
        out = {}
        for name, rows, cols in (("dst", self.dst, self.src), ("src", self.src, self.dst)):
            order = torch.argsort(rows, stable=True)
            crow = torch.zeros(self.n_nodes + 1, dtype=torch.int64, device=self.device)
            crow[1:] = torch.cumsum(torch.bincount(rows, minlength=self.n_nodes), 0)
            out[f"{name}_order"], out[f"{name}_crow"], out[f"{name}_col"] = order, crow, cols[order]
        return out

    def row_sums(self, edge_values: torch.Tensor) -> torch.Tensor:
        """Per node, the sum of ``edge_values`` (in edge order) over its in-edges."""
        return torch.zeros(self.n_nodes, dtype=edge_values.dtype, device=self.device).index_add_(
            0, self.dst, edge_values
        )

    def _sparse(self, weights: torch.Tensor, by: str) -> torch.Tensor:
        csr, n = self._csr, self.n_nodes
        return torch.sparse_csr_tensor(
            csr[f"{by}_crow"], csr[f"{by}_col"], weights[csr[f"{by}_order"]], size=(n, n), device=self.device
        )

    def split(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split node rows into (user rows, item rows)."""
        return embeddings[: self.n_users], embeddings[self.n_users :]


@dataclass(frozen=True)
class Adjacency:
    """A weighted adjacency as two CSR matrices: ``forward`` (rows: destinations) and its transpose."""

    forward: torch.Tensor
    transpose: torch.Tensor


class _Product(torch.autograd.Function):
    """``A x``; its gradient ``A^T g`` uses the stored transpose, so no backward pass transposes ``A``."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, adjacency: Adjacency) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency.forward @ features

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.adjacency.transpose @ grad.contiguous(), None


class _AdaptivePropagate(torch.autograd.Function):
    """r = A_w x with w_e = a_e / s_h, a_e = (1 + <n_h, n_t>) / 2, s_h = sum of a over h's in-edges (1 if 0).

    Backward, for the edges e = (t -> h) and g = dL/dr: dx = A_w^T g; dw_e = <g_h, x_t>;
    da_e = (dw_e - q_h) / s_h with q_h = sum over h's in-edges of dw * w (the row normaliser's share);
    dn_h += da_e / 2 * n_t and dn_t += da_e / 2 * n_h (two CSR products with the weights da / 2).
    """

    @staticmethod
    def forward(ctx, normalized: torch.Tensor, features: torch.Tensor, graph: InteractionGraph) -> torch.Tensor:
        alpha = (dgl.ops.u_dot_v(graph.graph, normalized, normalized).squeeze(1) + 1) / 2
        sums = graph.row_sums(alpha)
        sums = torch.where(sums > 0, sums, torch.ones_like(sums))
        weights = alpha / sums[graph.dst]
        ctx.save_for_backward(normalized, features, weights, sums)
        ctx.graph = graph
        return graph._sparse(weights, "dst") @ features

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        normalized, features, weights, sums = ctx.saved_tensors
        graph, grad = ctx.graph, grad.contiguous()
        grad_normalized = grad_features = None
        if ctx.needs_input_grad[1]:
            grad_features = graph._sparse(weights, "src") @ grad
        if ctx.needs_input_grad[0]:
            grad_weights = dgl.ops.u_dot_v(graph.graph, features, grad).squeeze(1)
            share = graph.row_sums(grad_weights * weights)
            half_grad_alpha = (grad_weights - share[graph.dst]) / sums[graph.dst] / 2
            grad_normalized = graph._sparse(half_grad_alpha, "dst") @ normalized
            grad_normalized = grad_normalized + graph._sparse(half_grad_alpha, "src") @ normalized
        return grad_normalized, grad_features, None
