"""The study's algorithm, written the way the study's code ran it: the yardstick for `make bench`.

This is what capkit's decoder computes, done the slow way the 2019 code did it (DESIGN.md section 1, "known
defects"):

- the attention's encoder side W_a a_i is recomputed inside every time step, although it does not depend on t;
- every step runs the whole padded batch (finished captions keep computing until the longest one ends);
- the deep output (L_h, L_z and the big L_o) runs inside the time loop, one [B, V] matmul per step;
- greedy decoding runs one image at a time;
- and in a training epoch the frozen CNN re-encodes every image of every batch.

The parameters carry capkit's names (`attention.feat_proj`, `lstm.weight_ih`, ...), so
``reference.load_state_dict(capkit_decoder.state_dict())`` gives both the same weights; the tests check that the two
compute the same loss and the same greedy captions. Nothing in capkit imports this file.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class StudyAttention(nn.Module):
    """e_ti = w^T relu(W_a a_i + W_q q_t), recomputing W_a a_i at every call (= every step)."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int, lookback: bool):
        super().__init__()
        self.lookback = lookback
        self.feat_proj = nn.Linear(encoder_dim, attention_dim)
        self.query_proj = nn.Linear(decoder_dim + (encoder_dim if lookback else 0), attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, feats, h, z_prev):
        proj = self.feat_proj(feats)  # [B, L, A]: the same every step, computed every step
        query = torch.cat([h, z_prev], dim=1) if self.lookback else h
        e = self.score(torch.relu(proj + self.query_proj(query).unsqueeze(1))).squeeze(2)  # [B, L]
        alpha = F.softmax(e, dim=1)
        z = (feats * alpha.unsqueeze(2)).sum(dim=1)  # [B, D]
        return z, alpha


class StudyDecoder(nn.Module):
    """Show, Attend and Tell (or the study's Look-Back) decoder, stepped over the full padded batch."""

    def __init__(self, vocab_size, encoder_dim, embed_dim=300, attention_dim=512, decoder_dim=512, dropout=0.5,
                 attention="soft", gate="scalar"):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.attention = StudyAttention(encoder_dim, decoder_dim, attention_dim, lookback=attention == "lookback")
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, 1 if gate == "scalar" else encoder_dim)  # the paper's scalar gate
        self.lstm = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim)
        self.L_h = nn.Linear(decoder_dim, embed_dim)
        self.L_z = nn.Linear(encoder_dim, embed_dim, bias=False)
        self.L_o = nn.Linear(embed_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def like(cls, capkit_decoder) -> "StudyDecoder":
        """A reference decoder with the same sizes, weights, dtype and device as a ``capkit.models.CaptionDecoder``."""
        c = capkit_decoder.config
        p = next(capkit_decoder.parameters())
        ref = cls(c.vocab_size, c.encoder_dim, c.embed_dim, c.attention_dim, c.decoder_dim, c.dropout, c.attention,
                  c.gate).to(p.device, p.dtype)
        ref.load_state_dict(capkit_decoder.state_dict())
        return ref

    def init_state(self, feats):
        mean = feats.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), mean

    def step(self, feats, emb, h, c, z_prev):
        z, alpha = self.attention(feats, h, z_prev)
        z_in = torch.sigmoid(self.f_beta(h)) * z
        h, c = self.lstm(torch.cat([emb, z_in], dim=1), (h, c))
        logits = self.L_o(self.dropout(emb + self.L_h(h) + self.L_z(z_in)))
        return logits, alpha, h, c, z

    def forward(self, feats, captions, lengths):
        """Teacher forcing over every step of the padded batch: logits [B, T-1, V], alphas [B, T-1, L]."""
        B, T = captions.shape
        emb = self.embedding(captions)
        h, c, z_prev = self.init_state(feats)
        logits = feats.new_zeros(B, T - 1, self.vocab_size)
        alphas = feats.new_zeros(B, T - 1, feats.size(1))
        for t in range(T - 1):
            logits[:, t], alphas[:, t], h, c, z_prev = self.step(feats, emb[:, t], h, c, z_prev)
        return logits, alphas

    def loss(self, feats, captions, lengths, lambda_att: float = 1.0):
        """[sum of the real tokens' cross-entropy + lambda * sum_b sum_i (1 - sum_t alpha_bti)^2] / tokens: the
        paper's per-caption objective (Xu et al. 2015, eq. 14) summed over the batch, divided by its token count."""
        logits, alphas = self(feats, captions, lengths)
        steps = lengths - 1
        mask = torch.arange(captions.size(1) - 1, device=captions.device).unsqueeze(0) < steps.unsqueeze(1)
        ce = F.cross_entropy(logits[mask], captions[:, 1:][mask])
        alpha_sum = (alphas * mask.unsqueeze(2)).sum(dim=1)
        return ce + lambda_att * ((1.0 - alpha_sum) ** 2).sum() / mask.sum()

    @torch.no_grad()
    def greedy_one(self, feats, start_id: int, end_id: int, max_len: int = 30) -> list[int]:
        """Greedy decoding of ONE image (feats [1, L, D]), as the study's demo and evaluation did."""
        h, c, z_prev = self.init_state(feats)
        token = torch.tensor([start_id], device=feats.device)
        out = []
        for _ in range(max_len):
            logits, _, h, c, z_prev = self.step(feats, self.embedding(token), h, c, z_prev)
            logits[:, start_id] = float("-inf")  # capkit never emits <start> either
            token = logits.argmax(dim=1)
            if int(token) == end_id:
                break
            out.append(int(token))
        return out


def train_step(model, optimizer, feats, captions, lengths, lambda_att=1.0, grad_clip=5.0) -> float:
    """One optimisation step, as the study's loop did it."""
    loss = model.loss(feats, captions, lengths, lambda_att)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())
