"""The user-item interaction graph on DGL, with the propagation kernels the methods share.

Nodes are users ``0..U-1`` followed by items ``U..U+I-1``; each training interaction is stored as two
directed edges. Symmetric normalisation D^-1/2 A D^-1/2 is applied by scaling node features before and after
an unweighted ``copy_u`` + ``sum`` pass, which is several times faster on CPU than edge-weighted messages.
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import numpy as np
import torch

from recrepro.data.canonical import InteractionData

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

    def drop_edges(self, keep_rate: float) -> dgl.DGLGraph:
        """A copy of the graph keeping each directed edge independently with probability ``keep_rate``.

        Used with :meth:`propagate` this reproduces the reference's edge dropout: entries of the normalised
        adjacency are masked with no rescaling and no re-normalisation (the norms stay the full graph's).
        """
        if keep_rate >= 1.0:
            return self.graph
        keep = torch.rand(self.n_edges, device=self.device) < keep_rate
        return dgl.edge_subgraph(self.graph, keep.nonzero().squeeze(1), relabel_nodes=False, store_ids=False)

    def propagate(self, features: torch.Tensor, graph: dgl.DGLGraph | None = None) -> torch.Tensor:
        """One step of D^-1/2 A D^-1/2 ``features`` over ``graph`` (default: the full graph)."""
        graph = self.graph if graph is None else graph
        with graph.local_scope():
            graph.srcdata["h"] = features * self.norm
            graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "h"))
            return graph.dstdata["h"] * self.norm

    def split(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split node rows into (user rows, item rows)."""
        return embeddings[: self.n_users], embeddings[self.n_users :]
