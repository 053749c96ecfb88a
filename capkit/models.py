"""Attention decoders: Show, Attend and Tell (soft attention) and the study's Look-Back attention; the registry of
the decoders a run can use.

One LSTM decoder, two attention modules. Notation (DESIGN.md section 2): image features a_i (i = 1..L, dim D),
LSTM state h_t, c_t, word embedding E y, attended context z_t. Top down:

Config: `DecoderConfig`, the sizes, the attention form and the gate (`to_dict` / `from_dict`: checkpoints).

Attention: `SoftAttention`, `LookBackAttention`.

    e_ti    = w^T relu(W_a a_i + W_h h_{t-1})                      soft attention
    e_ti    = w^T relu(W_a a_i + W_q [h_{t-1}; z_{t-1}])           look-back attention (the study's form)
    alpha_t = softmax_i(e_t),   z_t = sum_i alpha_ti a_i

Decoder: `CaptionDecoder` (and `Objective`, its training calls as one module's forward, for DDP).

    beta_t  = sigmoid(f_beta(h_{t-1}))                              gate: a scalar (paper) or one per channel
    h_t,c_t = LSTM([E y_{t-1}; beta_t * z_t], (h_{t-1}, c_{t-1})),  h_0, c_0 = tanh(W (1/L sum_i a_i) + b)
    p(y_t)  = softmax(L_o dropout(E y_{t-1} + L_h h_t + L_z beta_t z_t))                       deep output

`forward` returns padded [B, T-1, .] outputs (with `caption_loss`); `loss` is the trainer's path: the same
loss straight from the packed rows, without building and re-reading the padded [B, T-1, V] logits.
Incremental decoding for search: `init_state`, `step`, `reorder_state` (used by capkit.decode).

Speed (the study's code recomputed W_a a_i at every step and stepped the full padded batch):
- W_a a_i does not depend on t: `precompute` runs it once per image.
- Teacher forcing sorts captions by length and shrinks the active batch as captions end (no work on padding).
- Everything that does not feed the recurrence runs once over all valid positions, outside the time loop:
  the embedding's share of the LSTM input gates, and the whole deep output (L_h, L_z and the big L_o).
  The loop keeps only what is truly sequential: attention, gate, LSTM.
- The attention scores, the deferred gradients of W_a a and of the LSTM's weights, and the cross-entropy run
  through hand-written autograd ops (`capkit.fused`).
Where the work goes, one training step at the study's sizes (B 32, L 196, D 1024, attention 512, decoder 512,
embed 300, vocab 10k, 29 steps): forward ~21 GFLOP = W_a a 6.6 (once; the study's code did it at every step,
29 x 6.6 = 191) + the LSTM's context/recurrent matmuls 5.8 (0.2 a step, M = batch, the only big matmuls left
in the loop) + the embedding's gate share 1.1 + deep output 0.9 + L_o 5.6; backward about twice that. The
per-step attention (add, relu, score over [B, L, 512]) is few FLOPs but memory-bound.

Loss: `caption_loss` (from padded outputs), `objective` (both paths end there).

    loss    = sum_t CE_t + lambda_att * sum_i (1 - sum_t alpha_ti)^2   per caption (the paper's eq. 14); `objective`
                                                                    divides the batch's sum by its token count

Contract and registry: `SequenceDecoder` and `SetDecoder` (Protocols naming every method and attribute capkit
calls), `DecoderSpec`, `DECODERS`, `register_decoder`, `decoder_spec`. Every decoder a run can name
(`TrainConfig.decoder`), with how it is built, rebuilt from a checkpoint, labelled and searched; capkit's own are
registered in `capkit.decoders`, one line each (the specs of "soft" and "lookback" are `SOFT` and `LOOKBACK` here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from capkit.fused import (CrossEntropy, DeferredProjGrad, DeferredWeightGrad, ReluScore, gathered_context,
                          gathered_scores)


@dataclass
class DecoderConfig:
    vocab_size: int
    encoder_dim: int
    embed_dim: int = 300
    attention_dim: int = 512
    decoder_dim: int = 512
    dropout: float = 0.5
    attention: str = "soft"  # "soft" (Xu et al. 2015) | "lookback" (the study's Look-Back)
    gate: str = "scalar"  # "scalar": the paper's beta_t | "channel": one gate per feature channel

    def __post_init__(self):
        if self.attention not in ("soft", "lookback"):
            raise ValueError(f"attention must be 'soft' or 'lookback', not {self.attention!r}")
        if self.gate not in ("scalar", "channel"):
            raise ValueError(f"gate must be 'scalar' or 'channel', not {self.gate!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DecoderConfig":
        return cls(**d)


# ----------------------------------------------------------------------------------------------------------------
# attention


class SoftAttention(nn.Module):
    """e_ti = w^T relu(W_a a_i + W_h h_{t-1});  alpha_t = softmax(e_t);  z_t = sum_i alpha_ti a_i."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.feat_proj = nn.Linear(encoder_dim, attention_dim)  # W_a (its bias is the only attention bias)
        self.query_proj = nn.Linear(self.query_dim(encoder_dim, decoder_dim), attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)  # w (a bias would cancel in the softmax)

    @staticmethod
    def query_dim(encoder_dim: int, decoder_dim: int) -> int:
        return decoder_dim

    def precompute(self, feats: torch.Tensor) -> torch.Tensor:
        """W_a a_i + b for every region: [B, L, D] -> [B, L, A]. Once per image, never per step."""
        return self.feat_proj(feats)

    def query(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        return self.query_proj(h)

    def forward(self, proj, feats, h, z_prev, proj_grad=None, image=None):
        """proj [B0, L, A] from precompute, feats [B, L, D], h [B, H], z_prev [B, D] -> z [B, D], alpha [B, L].

        Training: only proj's first B rows are read (B0 >= B: the loop passes all rows, with `proj_grad`).
        Search: proj and feats hold one row per image and image [B] names each decoding row's image."""
        q = self.query(h, z_prev)  # [B, A]
        w = self.score.weight.squeeze(0)  # [A]
        if image is not None:  # beams / samples: read the image's proj and features, never copies of them
            alpha = F.softmax(gathered_scores(proj, image, q, w), dim=1)  # [B, L]
            return gathered_context(alpha, feats, image), alpha
        e = ReluScore.apply(proj, q, w, proj_grad)  # [B, L]
        alpha = F.softmax(e, dim=1)
        z = torch.bmm(alpha.unsqueeze(1), feats).squeeze(1)  # [B, D]
        return z, alpha


class LookBackAttention(SoftAttention):
    """The study's Look-Back attention: e_ti = w^T relu(W_a a_i + W_q [h_{t-1}; z_{t-1}]), z_0 = mean_i a_i.

    The query also sees the previous step's attended context z_{t-1} (before the beta gate), so attention can
    move coherently from region to region. Deviation from Qin et al. (CVPR 2019, "Look Back and Predict Forward
    in Image Captioning"): as we read the paper, they add the previous attention result to the attention of the
    two-layer Up-Down decoder (Anderson et al. 2018: attention driven by the attention-LSTM's current state, tanh
    scores). The study, and this module, keep the single-LSTM Show-Attend-Tell decoder instead: the query is
    [h_{t-1}; z_{t-1}] with relu scores, and z_0 is the mean feature.
    """

    @staticmethod
    def query_dim(encoder_dim: int, decoder_dim: int) -> int:
        return decoder_dim + encoder_dim

    def query(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        return self.query_proj(torch.cat([h, z_prev], dim=1))


# ----------------------------------------------------------------------------------------------------------------
# decoder


class CaptionDecoder(nn.Module):
    """Show, Attend and Tell LSTM decoder over precomputed encoder features [B, L, D]."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = cfg = config
        V, D, E, H, A = cfg.vocab_size, cfg.encoder_dim, cfg.embed_dim, cfg.decoder_dim, cfg.attention_dim
        self.embedding = nn.Embedding(V, E)
        attention = SoftAttention if cfg.attention == "soft" else LookBackAttention
        self.attention = attention(D, H, A)
        self.init_h = nn.Linear(D, H)  # h_0 = tanh(W mean_i a_i + b)
        self.init_c = nn.Linear(D, H)
        self.f_beta = nn.Linear(H, 1 if cfg.gate == "scalar" else D)  # beta_t = sigmoid(f_beta(h_{t-1}))
        self.lstm = nn.LSTMCell(E + D, H)  # input [E y_{t-1}; beta_t z_t]
        self.L_h = nn.Linear(H, E)  # deep output: L_o(E y + L_h h + L_z z)
        self.L_z = nn.Linear(D, E, bias=False)
        self.L_o = nn.Linear(E, V)
        # Dropout on the deep-output vector just before L_o: every token's prediction is regularised, and the
        # recurrence (h, c, attention) stays deterministic, so teacher forcing and step() see the same states.
        self.dropout = nn.Dropout(cfg.dropout)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.L_o.weight, -0.1, 0.1)
        nn.init.zeros_(self.L_o.bias)

    # -- embeddings --------------------------------------------------------------------------------------------

    def load_embeddings(self, matrix: torch.Tensor, freeze: bool = True) -> None:
        """Copy a pretrained [vocab_size, embed_dim] matrix into the embedding (and freeze it by default)."""
        matrix = torch.as_tensor(matrix, dtype=self.embedding.weight.dtype)
        if matrix.shape != self.embedding.weight.shape:
            raise ValueError(f"embedding matrix {tuple(matrix.shape)} != {tuple(self.embedding.weight.shape)}")
        with torch.no_grad():
            self.embedding.weight.copy_(matrix)
        self.freeze_embeddings(freeze)

    def freeze_embeddings(self, freeze: bool = True) -> None:
        self.embedding.weight.requires_grad_(not freeze)

    # -- pieces shared by forward() and step() -----------------------------------------------------------------

    def _init_hidden(self, feats):
        mean = feats.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), mean

    def _deep_vector(self, emb, h, z):
        """The deep-output vector that L_o reads: dropout(E y + L_h h + L_z z) [., E] (heads of subclasses too)."""
        return self.dropout(emb + self.L_h(h) + self.L_z(z))

    # -- teacher forcing ---------------------------------------------------------------------------------------

    def forward(self, feats: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor):
        """Teacher forcing.

        feats [B, L, D]; captions [B, T] = <start> w1 .. wn <end> <pad>..; lengths [B] count <start> and <end>.
        Returns logits [B, T-1, V] predicting captions[:, 1:] and alphas [B, T-1, L]; both are 0 past each length.
        """
        B, T = captions.shape
        logits, alphas, rows = self.forward_packed(feats, captions, lengths)
        # scatter the packed rows back to [B, T-1, .]; padding stays 0
        padded_logits = logits.new_zeros(B * (T - 1), logits.size(1)).index_copy(0, rows, logits)
        padded_alphas = alphas.new_zeros(B * (T - 1), alphas.size(1)).index_copy(0, rows, alphas)
        return padded_logits.view(B, T - 1, -1), padded_alphas.view(B, T - 1, -1)

    def loss(self, feats, captions, lengths, lambda_att: float = 1.0, label_smoothing: float = 0.0):
        """caption_loss(*forward(...)) without building the padded [B, T-1, V] logits (the trainer's fast path)."""
        B, T = captions.shape
        logits, alphas, rows = self.forward_packed(feats, captions, lengths)
        ce = CrossEntropy.apply(logits, captions[:, 1:].reshape(-1)[rows], label_smoothing)  # float32 also under autocast
        alphas = alphas.float()
        alpha_sum = alphas.new_zeros(B, alphas.size(1)).index_add(0, rows // (T - 1), alphas)  # sum_t alpha_ti
        return objective(ce, len(rows), alpha_sum, lambda_att)

    def forward_packed(self, feats: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor):
        """Teacher forcing on the valid positions only.

        Returns logits [N, V] and alphas [N, L] for the N = sum(lengths - 1) predicted tokens, and rows [N]: where
        each sits in the flattened [B, T-1] grid, in the caller's order: (b, t) = divmod(rows[r], T - 1) means
        row r predicts captions[b, t + 1].
        """
        deep, alphas, rows = self._forward_deep(feats, captions, lengths)
        return self.L_o(deep), alphas, rows

    def _forward_deep(self, feats: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor):
        """forward_packed up to L_o: the deep-output vectors [N, E] (`_deep_vector`, dropout applied), alphas [N, L],
        rows [N]. A subclass's extra output heads read the same vectors."""
        B, T = captions.shape
        feats = feats.to(self.L_o.weight.dtype)  # e.g. float16 features from the cache
        steps = (lengths.to(captions.device) - 1).clamp(min=0)  # decoding steps per caption
        order = torch.argsort(steps, descending=True, stable=True)  # longest first: the active batch is a prefix
        if not torch.equal(order, torch.arange(B, device=order.device)):
            feats, captions, steps = feats[order], captions[order], steps[order]
        n_steps = int(steps[0]) if B else 0
        if n_steps > T - 1:
            raise ValueError(f"a length of {n_steps + 1} does not fit captions of width {T}")
        # packed layout (time-major, like a PackedSequence): step t holds sorted rows 0..batch_sizes[t]-1
        valid = torch.arange(n_steps, device=steps.device).unsqueeze(1) < steps.unsqueeze(0)  # [n_steps, B]
        batch_sizes = valid.sum(1).tolist()
        emb = self.embedding(captions[:, :n_steps].t()[valid])  # [N, E]: E y_{t-1} of every valid position

        # the embedding's share of the LSTM input gates, for all steps in one matmul (LSTM biases folded in)
        w_emb, w_ctx = self.lstm.weight_ih.split([self.config.embed_dim, self.config.encoder_dim], dim=1)
        gates_emb = F.linear(emb, w_emb, self.lstm.bias_ih + self.lstm.bias_hh)
        # the loop uses the context/recurrent weights detached; their gradients come in one matmul each
        lstm_inputs: list = []
        gates_emb = DeferredWeightGrad.apply(gates_emb, w_ctx, self.lstm.weight_hh, lstm_inputs).split(batch_sizes)
        w_ctx_t, w_hh_t = w_ctx.detach().t(), self.lstm.weight_hh.detach().t()

        proj = self.attention.precompute(feats)  # W_a a_i, once
        proj_grad = torch.zeros_like(proj) if proj.requires_grad else None  # filled by the steps' backward
        if proj_grad is not None:
            proj = DeferredProjGrad.apply(proj, proj_grad)
        h, c, z_prev = self._init_hidden(feats)
        hs, zs, alphas = [], [], []
        for t, n in enumerate(batch_sizes):
            if n < h.size(0):  # captions that ended leave the batch (they are its last rows; proj stays whole)
                h, c, z_prev, feats = h[:n], c[:n], z_prev[:n], feats[:n]
            z, alpha = self.attention(proj, feats, h, z_prev, proj_grad)
            z_in = torch.sigmoid(self.f_beta(h)) * z  # beta_t z_t
            gates = torch.addmm(gates_emb[t], z_in, w_ctx_t) + h @ w_hh_t
            lstm_inputs.append((z_in.detach(), h.detach()))
            i, f, g, o = gates.chunk(4, dim=1)  # nn.LSTMCell's gate order
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            zs.append(z_in)
            alphas.append(alpha)
            z_prev = z

        if not batch_sizes:  # every caption empty
            return emb.new_zeros(0, self.config.embed_dim), emb.new_zeros(0, feats.size(1)), order[:0]
        # deep output (and, in forward_packed, the big L_o) once, over the N valid positions
        deep = self._deep_vector(emb, torch.cat(hs), torch.cat(zs))
        t_idx, b_idx = valid.nonzero(as_tuple=True)  # row-major = the packed order
        rows = order[b_idx] * (T - 1) + t_idx
        return deep, torch.cat(alphas), rows

    # -- incremental decoding ----------------------------------------------------------------------------------

    STATIC_STATE = ("feats", "proj")  # per-image entries: one row an image, whatever the rows do

    def init_state(self, feats: torch.Tensor) -> dict:
        """Decoding state for feats [B, L, D]: a dict of batch-first tensors. The per-image entries (STATIC_STATE)
        keep one row an image; "image" [rows] says which one each decoding row reads."""
        feats = feats.to(self.L_o.weight.dtype)
        h, c, mean = self._init_hidden(feats)
        # z: the previous attended context (z_0 = mean feature); only look-back attention reads it
        return {"h": h, "c": c, "z": mean, "feats": feats, "proj": self.attention.precompute(feats),
                "image": torch.arange(feats.size(0), device=feats.device)}

    def step(self, tokens: torch.Tensor, state: dict):
        """One decoding step: tokens [B] (y_{t-1}) -> log-probs [B, V], alpha [B, L], new state.

        Computes exactly what forward() computes at the same position (in eval mode).
        """
        deep, alpha, state = self._step_deep(tokens, state)
        return F.log_softmax(self.L_o(deep), dim=1), alpha, state

    def _step_deep(self, tokens: torch.Tensor, state: dict):
        """step up to L_o: the deep-output vector [B, E], alpha [B, L], the new state."""
        h, c = state["h"], state["c"]
        z, alpha = self.attention(state["proj"], state["feats"], h, state["z"], image=state["image"])
        z_in = torch.sigmoid(self.f_beta(h)) * z
        emb = self.embedding(tokens)
        h, c = self.lstm(torch.cat([emb, z_in], dim=1), (h, c))
        return self._deep_vector(emb, h, z_in), alpha, {**state, "h": h, "c": c, "z": z}

    def reorder_state(self, state: dict, index: torch.Tensor, static: bool = True) -> dict:
        """index_select the per-row entries along the batch (beam search reordering, B images -> B*k beams;
        dropping the rows that are done). The per-image entries (STATIC_STATE) are never copied: the rows'
        "image" entry moves with them instead, so ``static`` (the registry's contract: False when `index` only
        moves beams among the beams of one image) changes nothing here.
        """
        return {k: v if k in self.STATIC_STATE else v.index_select(0, index) for k, v in state.items()}


class Objective(nn.Module):
    """A decoder's training computations as a module's ``forward``: the module that DistributedDataParallel wraps.

    DDP averages gradients over the ranks from hooks on the parameters, but arms them only in the wrapped
    module's ``forward``: after a backward through another method (``CaptionDecoder.loss``, ``forward_packed``)
    every rank silently keeps its own gradients. So ``Objective(decoder)("loss", feats, captions, lengths, ...)``
    calls ``decoder.loss`` from its forward (``"forward_packed"`` likewise).

    The hand-written ops are fine under DDP: each parameter's gradient still reaches its parameter through
    autograd, even when an op hands it out late (``DeferredWeightGrad``: the LSTM's weight gradients at the end
    of backward; ``DeferredProjGrad``: W_a a's), and DDP's hook fires when it arrives.
    """

    METHODS = ("loss", "forward_packed")

    def __init__(self, decoder: CaptionDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, method: str, *args, **kwargs):
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, not {method!r}")
        return getattr(self.decoder, method)(*args, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# the decoder contract and the registry


@runtime_checkable
class SequenceDecoder(Protocol):
    """What capkit calls on a word-by-word decoder (``DecoderSpec.search == "sequence"``).

    - training (capkit.fit, capkit.loops), validation loss: ``loss``; DDP (models.Objective): ``loss``,
      ``forward_packed``;
    - self-critical training (capkit.scst): ``forward_packed``;
    - search (capkit.decode: greedy, beam, sampling; capkit.mbr): ``init_state``, ``step``, ``reorder_state`` and
      ``config.vocab_size``;
    - word vectors (TrainConfig.word_vectors): ``load_embeddings``;
    - checkpoints: ``config.to_dict()`` and the spec's config class ``from_dict``; ``state_dict`` as any module.
    """

    config: Any  # a dataclass with vocab_size, encoder_dim, to_dict() (its class: from_dict)
    STATIC_STATE: tuple  # state entries with one row an image, never copied to beams

    def loss(self, feats, captions, lengths, lambda_att: float = 1.0, label_smoothing: float = 0.0) -> tuple:
        """feats [B, L, D], captions [B, T], lengths [B] -> (loss, {"ce", "att", "loss"} detached)."""

    def forward_packed(self, feats, captions, lengths) -> tuple:
        """-> logits [N, V], alphas [N, L], rows [N]: (b, t) = divmod(rows[r], T - 1) predicts captions[b, t + 1]."""

    def init_state(self, feats) -> dict:
        """feats [B, L, D] -> a dict of batch-first tensors (``"image"`` [B]: each row's image)."""

    def step(self, tokens, state: dict) -> tuple:
        """tokens [B] -> (log-probs [B, V], alpha [B, L], new state)."""

    def reorder_state(self, state: dict, index, static: bool = True) -> dict:
        """Rows follow ``index``; ``static=False``: index only moves beams among the beams of one image."""

    def load_embeddings(self, matrix, freeze: bool = True) -> None:
        """Copy word vectors [vocab_size, width] into the input embedding."""


@runtime_checkable
class SetDecoder(Protocol):
    """What capkit calls on a set decoder (``DecoderSpec.search == "set"``): ``loss`` (training, DDP) as for a
    sequence decoder, ``scores(feats) -> [B, V]`` X, capkit.runs) and
    ``attention(feats) -> [B, V, L]``, each tag's map over the regions (figures)."""

    config: Any

    def loss(self, feats, captions, lengths, lambda_att: float = 1.0, label_smoothing: float = 0.0) -> tuple:
        """As :meth:`SequenceDecoder.loss`."""

    def scores(self, feats):
        """feats [B, L, D] -> probabilities [B, V]."""

    def attention(self, feats):
        """feats [B, L, D] -> [B, V, L]."""


@dataclass(frozen=True)
class DecoderSpec:
    """One decoder of the registry: how to build it, how to rebuild it from a checkpoint, how it is searched.

    Every decoder is an ``nn.Module`` with a ``config`` (a dataclass with ``vocab_size``, ``to_dict``,
    ``from_dict``) and ``loss(feats [B, L, D], captions [B, T], lengths [B], lambda_att, label_smoothing) ->
    (loss, parts)`` with parts holding at least ``"ce"`` (the data term, also the validation loss), ``"att"``
    (an attention term, or 0) and ``"loss"``, detached; the trainer calls nothing else while training. What search needs depends on ``search``:

    - ``"sequence"``: word by word (capkit.decode: greedy, beam, sampling, MBR) through
      ``init_state(feats) -> state`` (a dict of batch-first tensors), ``step(tokens [B], state) -> (log-probs
      [B, V], alpha [B, L], state)`` and ``reorder_state(state, index, static=True)``; ``STATIC_STATE`` names the
      per-image entries beams of one image share.
    - ``"set"``: an unordered set of tokens (hashtags), from ``scores(feats) -> [B, V]`` probabilities, turned
      into a set by a top-k or threshold rule chosen on validation (capkit.multilabel); ``attention(feats) ->
      [B, V, L]`` gives each token's map for figures (uniform when the model does not attend).

    ``settings`` are config values the entry fixes (e.g. the attention form); ``build`` takes the rest (the
    trainer's sizes, dropping those the config class does not have) and the decoder's own ``options`` (a run's
    ``decoder_options``: each must be a field of the config class). :attr:`interface` is the Protocol
    (:class:`SequenceDecoder` or :class:`SetDecoder`) its modules satisfy.
    """

    label: str  # its name in tables and figures
    model: Callable  # config -> nn.Module
    config: type = DecoderConfig
    settings: dict = field(default_factory=dict)
    search: str = "sequence"  # "sequence" | "set"
    targets: tuple = ("text", "hashtag")
    loss_unit: str = "token"  # what `loss` is a mean over: "token" (predicted tokens) | "image" (torchrun shares)

    @property
    def interface(self) -> type:
        return SetDecoder if self.search == "set" else SequenceDecoder

    def build(self, options: dict | None = None, **sizes) -> nn.Module:
        known = {f.name for f in fields(self.config)}
        unknown = sorted(set(options or {}) - known)
        if unknown:
            raise ValueError(f"decoder {self.label!r}: unknown option(s) {', '.join(unknown)}; its options are "
                             f"{', '.join(sorted(known - {'vocab_size', 'encoder_dim'}))}")
        values = {**{k: v for k, v in sizes.items() if k in known}, **self.settings, **(options or {})}
        return self.model(self.config(**values))

    def load(self, stored: dict) -> nn.Module:
        """The module (untrained) for a config stored by ``model.config.to_dict()`` (checkpoints)."""
        return self.model(self.config.from_dict(stored))


DECODERS: dict[str, DecoderSpec] = {}


def register_decoder(name: str, spec: DecoderSpec) -> DecoderSpec:
    """Add a decoder under ``name`` (``TrainConfig.decoder``, run names, the Makefile's DECODERS)."""
    if name in DECODERS and DECODERS[name] != spec:
        raise ValueError(f"a different decoder is already registered as {name!r}")
    DECODERS[name] = spec
    return spec


def decoder_spec(name: str) -> DecoderSpec:
    """The registered decoder ``name``: capkit's own (listed in :mod:`capkit.decoders`) or one added with
    :func:`register_decoder`."""
    if name not in DECODERS:
        import capkit.decoders  # noqa: F401  (the built-in list: imported on first look-up, it imports this module)
    try:
        return DECODERS[name]
    except KeyError:
        raise ValueError(f"unknown decoder {name!r}; registered: {', '.join(DECODERS)}") from None


SOFT = DecoderSpec("soft", CaptionDecoder, settings={"attention": "soft"})
LOOKBACK = DecoderSpec("Look-Back", CaptionDecoder, settings={"attention": "lookback"})


# ----------------------------------------------------------------------------------------------------------------
# loss


def caption_loss(logits, captions, lengths, alphas, lambda_att: float = 1.0, label_smoothing: float = 0.0,
                 per: str = "token"):
    """The training objective from padded outputs (see `objective`).

    logits [B, T-1, V] and alphas [B, T-1, L] from CaptionDecoder.forward (zero past each length, so the t-sum
    of alphas runs over each caption's valid steps only); targets are captions[:, 1:].
    Returns (loss, parts) with parts = {"ce", "att", "loss"} as detached tensors.
    """
    steps = lengths.to(logits.device) - 1
    mask = torch.arange(logits.size(1), device=logits.device).unsqueeze(0) < steps.unsqueeze(1)  # [B, T-1]
    ce = F.cross_entropy(logits[mask], captions[:, 1 : 1 + logits.size(1)][mask], label_smoothing=label_smoothing)
    return objective(ce, int(mask.sum()), alphas.sum(dim=1), lambda_att, per=per)


def objective(ce, n_tokens: int, alpha_sum, lambda_att: float, per: str = "token"):
    """Cross-entropy plus the doubly stochastic attention term at the paper's scale.

    Xu et al. 2015 (eq. 14) minimise, per caption b,
        -sum_t log p(y_bt)  +  lambda * sum_i (1 - sum_t alpha_bti)^2,          lambda = 1.
    capkit sums that over the batch and divides by a count (a constant for the batch, so the trade-off between
    the two terms is the paper's whatever the caption lengths):
        per="token" (training):    [sum_bt CE_bt + lambda sum_b sum_i (.)^2] / N    N = tokens in the batch
        per="caption":             [sum_bt CE_bt + lambda sum_b sum_i (.)^2] / B
    per="token" keeps the loss on the scale of a mean cross-entropy per token (the learning rate of the study's
    mean-CE code still fits); it equals  mean CE + (lambda / mean tokens per caption) * mean_b sum_i (.)^2.
    lambda_att = 0 is the study's own code (masked mean CE, no attention term). The earlier form, mean CE +
    lambda * mean_b sum_i, weighed the term ~T (tokens per caption) times the paper's and flattened attention.

    ce: the mean cross-entropy over the n_tokens predicted tokens; alpha_sum [B, L] = sum_t alpha_ti.
    Returns (loss, parts): parts["att"] is the per-caption sum_i (1 - sum_t alpha_ti)^2, averaged over captions.
    """
    if per not in ("token", "caption"):
        raise ValueError(f"per must be 'token' or 'caption', not {per!r}")
    B = alpha_sum.size(0)
    att_sum = ((1.0 - alpha_sum) ** 2).sum()  # sum_b sum_i
    denom = max(n_tokens, 1) if per == "token" else max(B, 1)
    loss = (ce * n_tokens + lambda_att * att_sum) / denom
    return loss, {"ce": ce.detach(), "att": (att_sum / max(B, 1)).detach(), "loss": loss.detach()}
