"""A Transformer captioning decoder over the cached region features (the decoder of Vaswani et al. 2017, as the
field's ``transformer`` captioning models use it, with a few small layers for small data).

Notation: region features a_i (i = 1..L, dim D), words y_1..y_T, model width d, h heads of width d_h = d / h.

    m_i     = LN(W_m a_i)                                              memory: every region, projected once
    x^0_t   = sqrt(d) E y_{t-1} + P_t                                   word t's input: the previous word + position t
    for each layer l = 1..N (pre-norm residual blocks):
      x <- x + SelfAttn(LN(x))          causal: position t attends to positions 1..t only
      x <- x + CrossAttn(LN(x), m)      alpha^l_t = softmax_i(q_t . k_i / sqrt(d_h)), one map per head
      x <- x + W_2 dropout(relu(W_1 LN(x)))
    p(y_t)  = softmax(W_o LN(x^N_t))

The attention map of word t (figures, the viewer, the pointing game) is the last layer's cross-attention averaged
over its heads, alpha_t = mean_heads alpha^N_t [L]. The loss is capkit's objective (:func:`capkit.models.objective`):
the cross-entropy of every word plus lambda_att x the doubly stochastic term on those maps.

Decoding is incremental: ``init_state`` projects the memory and every layer's cross-attention keys and values once
per image; ``step`` feeds one new word, appends its self-attention keys and values to the cache (one new position a
step, never the prefix again) and returns the same numbers teacher forcing gives at that position.

Options (``TransformerConfig``; a run passes them as ``decoder_options``): d_model, layers, heads, ff_dim, dropout,
max_positions. The trainer's sizes that it does not use (embed_dim, attention_dim, decoder_dim, gate) are ignored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from capkit.models import DecoderSpec, objective


@dataclass
class TransformerConfig:
    vocab_size: int
    encoder_dim: int
    d_model: int = 256
    layers: int = 2
    heads: int = 4
    ff_dim: int = 1024
    dropout: float = 0.1
    max_positions: int = 64  # the longest caption it can read or write (<start> and <end> included)

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        return cls(**d)


class Attention(nn.Module):
    """Multi-head attention that returns its weights: queries from x, keys and values given (precomputable)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.d_head = heads, d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.d_head).transpose(1, 2)  # [B, h, T, d_h]

    def keys_values(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, d] -> stacked keys and values [B, 2, h, S, d_h]."""
        k, v = self.kv(x).chunk(2, dim=-1)
        return torch.stack([self.split(k), self.split(v)], dim=1)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None = None):
        """x [B, T, d], kv [B, 2, h, S, d_h], mask [T, S] (True: hidden) -> y [B, T, d], weights [B, h, T, S]."""
        q = self.split(self.q(x))  # [B, h, T, d_h]
        w = q @ kv[:, 0].transpose(-2, -1) / math.sqrt(self.d_head)  # [B, h, T, S]
        if mask is not None:
            w = w.masked_fill(mask, float("-inf"))
        w = F.softmax(w, dim=-1)
        y = self.dropout(w) @ kv[:, 1]  # [B, h, T, d_h]
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, -1)), w


class DecoderLayer(nn.Module):
    """Pre-norm: causal self-attention, cross-attention over the regions, feed-forward; each a residual block."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.ln_self, self.ln_cross, self.ln_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.heads, cfg.dropout)
        self.cross_attn = Attention(d, cfg.heads, cfg.dropout)
        self.ff = nn.Sequential(nn.Linear(d, cfg.ff_dim), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.ff_dim, d))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, self_kv, cross_kv, mask=None):
        """x [B, T, d] (the new positions), self_kv [B, 2, h, S, d_h] (all positions so far, x's included),
        cross_kv [B, 2, h, L, d_h] -> x [B, T, d], cross weights [B, h, T, L]."""
        y, _ = self.self_attn(self.ln_self(x), self_kv, mask)
        x = x + self.dropout(y)
        y, alpha = self.cross_attn(self.ln_cross(x), cross_kv)
        x = x + self.dropout(y)
        return x + self.dropout(self.ff(self.ln_ff(x))), alpha


class TransformerDecoder(nn.Module):
    """Transformer decoder over precomputed encoder features [B, L, D]; see the module notes."""

    STATIC_STATE = ()  # every entry has one row a decoding row (the cross keys/values are copied to beams)

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.d_model
        self.memory = nn.Sequential(nn.Linear(cfg.encoder_dim, d), nn.LayerNorm(d))  # m_i = LN(W_m a_i)
        self.embedding = nn.Embedding(cfg.vocab_size, d)
        self.position = nn.Embedding(cfg.max_positions, d)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embedding.weight, std=d ** -0.5)
        nn.init.normal_(self.position.weight, std=0.02)

    def load_embeddings(self, matrix: torch.Tensor, freeze: bool = True) -> None:
        """Word vectors [vocab_size, d_model] into the input embedding (and freeze it by default)."""
        matrix = torch.as_tensor(matrix, dtype=self.embedding.weight.dtype)
        if matrix.shape != self.embedding.weight.shape:
            raise ValueError(f"embedding matrix {tuple(matrix.shape)} != {tuple(self.embedding.weight.shape)} "
                             "(the transformer's word vectors are d_model wide)")
        with torch.no_grad():
            self.embedding.weight.copy_(matrix)
        self.embedding.weight.requires_grad_(not freeze)

    # -- shared pieces -------------------------------------------------------------------------------------------

    def _cross_kv(self, feats: torch.Tensor) -> torch.Tensor:
        """Every layer's cross-attention keys and values of the regions: [B, layers, 2, h, L, d_h]."""
        memory = self.memory(feats.to(self.out.weight.dtype))  # [B, L, d]
        return torch.stack([layer.cross_attn.keys_values(memory) for layer in self.layers], dim=1)

    def _inputs(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """sqrt(d) E y + P: tokens [B, T], positions [T] or [B, T] -> [B, T, d]."""
        if int(positions.max()) >= self.config.max_positions:
            raise ValueError(f"a caption longer than max_positions={self.config.max_positions}")
        x = self.embedding(tokens) * math.sqrt(self.config.d_model) + self.position(positions)
        return self.dropout(x)

    # -- teacher forcing -----------------------------------------------------------------------------------------

    def _teacher(self, feats, captions):
        """Logits [B, T-1, V] predicting captions[:, 1:] and head-averaged last cross-attention [B, T-1, L]."""
        B, T = captions.shape
        cross = self._cross_kv(feats)
        x = self._inputs(captions[:, :-1], torch.arange(T - 1, device=captions.device))  # [B, T-1, d]
        causal = torch.ones(T - 1, T - 1, dtype=torch.bool, device=x.device).triu(1)  # hide later positions
        for l, layer in enumerate(self.layers):
            x, alpha = layer(x, layer.self_attn.keys_values(layer.ln_self(x)), cross[:, l], causal)
        return self.out(self.ln_out(x)), alpha.mean(dim=1)

    def forward_packed(self, feats, captions, lengths):
        """Teacher forcing on the valid positions: logits [N, V], alphas [N, L], rows [N] with row r predicting
        captions[b, t + 1] where (b, t) = divmod(rows[r], T - 1)."""
        B, T = captions.shape
        logits, alphas = self._teacher(feats, captions)
        steps = (lengths.to(captions.device) - 1).clamp(min=0)
        valid = torch.arange(T - 1, device=captions.device).unsqueeze(0) < steps.unsqueeze(1)  # [B, T-1]
        b, t = valid.nonzero(as_tuple=True)
        return logits[b, t], alphas[b, t], b * (T - 1) + t

    def loss(self, feats, captions, lengths, lambda_att: float = 1.0, label_smoothing: float = 0.0):
        """The cross-entropy of every word + lambda_att x the attention term (capkit.models.objective)."""
        B, T = captions.shape
        logits, alphas, rows = self.forward_packed(feats, captions, lengths)
        ce = F.cross_entropy(logits.float(), captions[:, 1:].reshape(-1)[rows], label_smoothing=label_smoothing)
        alpha_sum = alphas.new_zeros(B, alphas.size(1)).index_add(0, rows // (T - 1), alphas).float()
        return objective(ce, len(rows), alpha_sum, lambda_att)

    # -- incremental decoding ------------------------------------------------------------------------------------

    def init_state(self, feats: torch.Tensor) -> dict:
        cross = self._cross_kv(feats)
        B = feats.size(0)
        empty = cross.new_zeros(B, len(self.layers), 2, self.config.heads, 0, self.config.d_model // self.config.heads)
        return {"cross": cross, "self": empty, "pos": torch.zeros(B, dtype=torch.long, device=feats.device),
                "image": torch.arange(B, device=feats.device)}

    def step(self, tokens: torch.Tensor, state: dict):
        """tokens [B] -> log-probs [B, V], alpha [B, L], the state with this position's keys and values cached."""
        x = self._inputs(tokens.unsqueeze(1), state["pos"].unsqueeze(1))  # [B, 1, d]
        cached = []
        for l, layer in enumerate(self.layers):
            kv = torch.cat([state["self"][:, l], layer.self_attn.keys_values(layer.ln_self(x))], dim=3)
            cached.append(kv)  # [B, 2, h, t+1, d_h]
            x, alpha = layer(x, kv, state["cross"][:, l])
        logprobs = F.log_softmax(self.out(self.ln_out(x[:, 0])), dim=-1)
        return logprobs, alpha.mean(dim=1)[:, 0], {**state, "self": torch.stack(cached, dim=1), "pos": state["pos"] + 1}

    def reorder_state(self, state: dict, index: torch.Tensor, static: bool = True) -> dict:
        """Rows follow ``index``. With ``static=False`` (beams moving among the beams of one image) the rows' cross
        keys and values are the same before and after, so they are not copied."""
        return {k: v if (k == "cross" and not static) else v.index_select(0, index) for k, v in state.items()}


SPEC = DecoderSpec("Transformer", TransformerDecoder, config=TransformerConfig)  # registered as "transformer"
