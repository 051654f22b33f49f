"""Layers and losses shared by several methods, each written to compute what the reference code computes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bpr_loss(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of softplus(s(u, i-) - s(u, i+)) (the reference's ``cal_bpr_loss`` divided by the batch size)."""
    return F.softplus((users * neg).sum(-1) - (users * pos).sum(-1)).mean()


def l2_all_parameters(module: nn.Module) -> torch.Tensor:
    """Sum of squared Frobenius norms of every parameter, frozen ones included (the reference's ``reg_params``)."""
    return sum(p.square().sum() for p in module.parameters())


def _normalize_eps(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(|x|^2 + 1e-8), row-wise (the reference's normalisation in its InfoNCE)."""
    return x * torch.rsqrt(1e-8 + x.square().sum(-1, keepdim=True))


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise x / max(|x|, eps), as ``F.normalize``, with a cheaper backward pass (multiply by rsqrt)."""
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True).clamp_min(eps * eps))


class _CosineLogSumExp(torch.autograd.Function):
    """sum_b w_b log sum_c m_c exp(<a_b, c_c> / t) for unit vectors a, c, candidate multiplicities m and anchor
    multiplicities w, with one B x C buffer.

    Cosines are at most 1, so exp((s - 1) / t) never overflows and the sum needs no row maximum. The backward
    pass reads the same buffer: the softmax's row scale 1 / total (and w_b) goes onto the B x d operands of its
    two products, so the B x C buffer is never rescaled.
    """

    @staticmethod
    def forward(
        ctx,
        a: torch.Tensor,
        c: torch.Tensor,
        log_counts: torch.Tensor | None,
        row_weights: torch.Tensor | None,
        temperature: float,
    ):
        weights = (a / temperature) @ c.T
        weights.sub_(1 / temperature)
        if log_counts is not None:
            weights.add_(log_counts)
        weights.exp_()
        totals = weights.sum(1)
        ctx.save_for_backward(a, c, weights, totals, row_weights)
        ctx.temperature = temperature
        per_row = totals.log() + 1 / temperature
        return (per_row * row_weights).sum() if row_weights is not None else per_row.sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, c, weights, totals, row_weights = ctx.saved_tensors
        scale = grad / ctx.temperature / totals  # d loss / d logits = scale_b x exp-weights_bc
        if row_weights is not None:
            scale = scale * row_weights
        scale = scale.unsqueeze(1)
        return (weights @ c) * scale, weights.T @ (a * scale), None, None, None


def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float,
    counts: torch.Tensor | None = None,
    anchor_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reference's ``cal_infonce_loss``: sum over rows of -cos(a, p)/t + log sum_c exp(cos(a, c)/t), with
    L2 normalisation by sqrt(|x|^2 + 1e-8); the positive must be among the candidates. Returns a **sum**.

    Repeated rows can be passed once with their multiplicity, with the same value and gradient: ``counts`` for
    candidates (the reference's in-batch item candidates repeat), ``anchor_counts`` for (anchor, positive) rows
    (a user or item that occurs several times in the batch).
    """
    a, p, c = _normalize_eps(anchor), _normalize_eps(positive), _normalize_eps(candidates)
    log_counts = torch.log(counts.to(a.dtype)) if counts is not None else None
    row_weights = anchor_counts.to(a.dtype) if anchor_counts is not None else None
    alignment = (a * p).sum(-1)
    if row_weights is not None:
        alignment = alignment * row_weights
    return -alignment.sum() / temperature + _CosineLogSumExp.apply(a, c, log_counts, row_weights, temperature)


class _AllPairsInfoNCE(torch.autograd.Function):
    """mean_n -log(p_n / (T_n + 1e-8) + 1e-8) with E = exp(x y^T / t), p_n = E_nn, T_n = sum_m E_nm, for normalised
    rows x, y, computed in blocks of rows.

    One block's exponentials are the only large buffer, allocated once per pass and reused by every block: it is
    kept for the backward pass when everything fits in one block, and recomputed block by block otherwise
    (O(block x M) memory). The gradient with respect to the logits is c_n (E_nm / (T_n + 1e-8) - [n = m]) with
    c_n = q_n / (q_n + 1e-8) / N and q_n = p_n / (T_n + 1e-8); its row scales go onto the block x d operands of the
    two products and its diagonal onto the rows themselves, so the buffer is only read.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, temperature: float, block: int):
        n = x.shape[0]
        totals, positives = x.new_empty(n), x.new_empty(n)
        buffer = x.new_empty(min(n, block), y.shape[0])
        for start in range(0, n, block):
            rows = slice(start, min(start + block, n))
            e = torch.mm(x[rows] / temperature, y.T, out=buffer[: rows.stop - start]).exp_()
            totals[rows] = e.sum(1)
            positives[rows] = torch.diagonal(e, offset=start)
        kept = buffer if n <= block else None
        q = positives / (totals + 1e-8)
        ctx.save_for_backward(x, y, totals, q, kept)
        ctx.temperature, ctx.block = temperature, block
        return -torch.log(q + 1e-8).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y, totals, q, kept = ctx.saved_tensors
        t, block, n = ctx.temperature, ctx.block, x.shape[0]
        scale = (grad * q / (q + 1e-8) / n / t).unsqueeze(1)  # c_n / t, the 1/t of the logits folded in
        softmax_scale = scale / (totals + 1e-8).unsqueeze(1)
        # y is often a constant (RLMRec-Gen's LLM profiles): its N x M x D product is then skipped
        grad_x = -scale * y[:n]  # the diagonal's -c_n terms
        grad_y = None
        if ctx.needs_input_grad[1]:
            grad_y = torch.zeros_like(y)
            grad_y[:n] = -scale * x
        buffer = kept if kept is not None else x.new_empty(min(n, block), y.shape[0])
        for start in range(0, n, block):
            rows = slice(start, min(start + block, n))
            e = buffer if kept is not None else torch.mm(x[rows] / t, y.T, out=buffer[: rows.stop - start]).exp_()
            grad_x[rows] += (e @ y) * softmax_scale[rows]
            if grad_y is not None:
                grad_y.addmm_(e.T, x[rows] * softmax_scale[rows])
        return grad_x, grad_y, None, None


def ssl_con_loss(x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0, block: int = 4096) -> torch.Tensor:
    """The reference's ``ssl_con_loss``: mean over rows of -log(exp(cos(x_n, y_n)/t) / (sum_m exp(cos(x_n, y_m)/t)
    + 1e-8) + 1e-8), rows L2-normalised as ``F.normalize``. Computed in row blocks with a hand-written backward
    (one ``block x M`` buffer instead of the N x M matrix and its autograd intermediates)."""
    return _AllPairsInfoNCE.apply(F.normalize(x), F.normalize(y), temperature, block)


class Projector(nn.Sequential):
    """The reference's text projector: Linear(d_in, (d_in + d_out) // 2) -> LeakyReLU -> Linear(-, d_out), with
    Xavier-uniform weights and PyTorch's default biases."""

    def __init__(self, d_in: int, d_out: int) -> None:
        hidden = (d_in + d_out) // 2
        super().__init__(nn.Linear(d_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, d_out))
        self.reset_weights()

    def reset_weights(self) -> None:
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)


def intent_aware(embeddings: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """DCCF's intent-aware representation softmax(E W) W^T (the softmax runs over the intents)."""
    return torch.softmax(embeddings @ prototypes, dim=1) @ prototypes.T
