"""Predict-Forward: the decoder also predicts the word after next, and decoding scores each word with both.

Qin et al., "Look Back and Predict Forward in Image Captioning", CVPR 2019, section 3 (PF; LBPF = Look-Back +
Predict-Forward, the paper's full model). What we could read of the paper (its abstract) says that PF predicts the
next two words in one time step and uses both probabilities jointly at inference. Section 3 itself (PF's equations,
its training loss, the weight it puts on the forward prediction) was not readable here: the stored copies of the
paper give only its abstract and introduction. So the formulation below is capkit's (the one settled on
for when the text could not be found), not necessarily the paper's exact equations, and the weight mu = 0.5 is our
choice, not the paper's; choose it on validation (it changes decoding only, not training).

Notation as in capkit.models (DESIGN.md section 2): the decoder is CaptionDecoder unchanged (soft or Look-Back
attention, gate, LSTM); PF adds one linear head L_f on the same deep-output vector that L_o reads.

    u_t      = dropout(E y_{t-1} + L_h h_t + L_z beta_t z_t)            [B, E]   deep-output vector (models.py)
    p_t      = softmax(L_o u_t)                                         [B, V]   the next word y_t (unchanged)
    q_t      = softmax(L_f u_t)                                         [B, V]   the word after next, y_{t+1}

Training (`loss`): the model's usual objective plus the forward head's cross-entropy,

    loss     = objective(CE(p_t, y_t), lambda_att)                               models.objective, unchanged
             + w_f * mean_{(b, t): y_{t+1} exists} CE(q_bt, y_b,t+1)             w_f = forward_loss_weight = 1

  The step that predicts <end> has no word after next and is masked out of the second term; the step that
  predicts the last word has <end> as its word after next. Label smoothing, when given, applies to both heads.

Inference (`step`): the score of word w at step t combines the current prediction with the forward prediction
made one step earlier (before y_{t-1} was chosen), and is renormalised so that it is a log-distribution again
(beam scores sum it; sampling and MBR decoding draw from it):

    s_t(w)   = log_softmax_w(log p_t(w) + mu * log q_{t-1}(w))                   mu = forward_weight = 0.5
             = log_softmax_w(L_o u_t + mu * log q_{t-1})                         (log p_t's normaliser cancels)
    s_1      = log p_1                                                           no forward prediction yet

  The state carries log q_{t-1} [B, V] (zeros before the first step: s_1 = log p_1 exactly). It is per-beam state
  (each beam made its own forward prediction), so `reorder_state` moves it with the beams. mu = 0 gives exactly
  CaptionDecoder's step.

`forward` and `forward_packed` stay the next-word head's (p_t): the validation curve and self-critical training
(capkit.scst teacher-forces sampled captions through forward_packed) read log p_t, not s_t; under SCST a PF model
samples from s_t but its gradient is that of log p_t. Hashtags: the forward head learns the tag after next of the
stored tag order; it works for both targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from capkit.fused import CrossEntropy
from capkit.models import CaptionDecoder, DecoderConfig, DecoderSpec, objective


@dataclass
class PredictForwardConfig(DecoderConfig):
    forward_weight: float = 0.5  # mu: the forward prediction's weight in the decoding score (decoding only)
    forward_loss_weight: float = 1.0  # w_f: the forward head's cross-entropy in the training loss

    def __post_init__(self):
        super().__post_init__()
        if self.forward_weight < 0 or self.forward_loss_weight < 0:
            raise ValueError(f"forward_weight and forward_loss_weight must be >= 0, not "
                             f"{self.forward_weight!r}, {self.forward_loss_weight!r}")


class PredictForwardDecoder(CaptionDecoder):
    """CaptionDecoder plus L_f, a second output head on the deep-output vector that predicts the word after next."""

    config: PredictForwardConfig

    def __init__(self, config: PredictForwardConfig):
        super().__init__(config)
        self.L_f = nn.Linear(config.embed_dim, config.vocab_size)  # q_t = softmax(L_f u_t), initialised like L_o
        nn.init.uniform_(self.L_f.weight, -0.1, 0.1)
        nn.init.zeros_(self.L_f.bias)

    # -- training ----------------------------------------------------------------------------------------------

    def loss(self, feats, captions, lengths, lambda_att: float = 1.0, label_smoothing: float = 0.0):
        """CaptionDecoder.loss + forward_loss_weight * the forward head's mean cross-entropy on y_{t+1}.

        Returns (loss, parts): parts = CaptionDecoder's {"ce", "att", "loss"} (loss: the total) and "ce_fwd"."""
        B, T = captions.shape
        deep, alphas, rows = self._forward_deep(feats, captions, lengths)  # u_t of the N valid positions
        ce = CrossEntropy.apply(self.L_o(deep), captions[:, 1:].reshape(-1)[rows], label_smoothing)
        alphas = alphas.float()
        alpha_sum = alphas.new_zeros(B, alphas.size(1)).index_add(0, rows // (T - 1), alphas)  # sum_t alpha_ti
        loss, parts = objective(ce, len(rows), alpha_sum, lambda_att)
        ce_fwd = self._forward_ce(deep, captions, lengths, rows, label_smoothing)
        loss = loss + self.config.forward_loss_weight * ce_fwd
        return loss, {**parts, "ce_fwd": ce_fwd.detach(), "loss": loss.detach()}

    def _forward_ce(self, deep, captions, lengths, rows, label_smoothing: float = 0.0):
        """Mean CE of q against y_{t+1} over the rows that have a word after next (deep [N, E], rows [N])."""
        T = captions.size(1)
        b, t = rows // (T - 1), rows % (T - 1)  # row r predicts captions[b, t + 1]; its forward target: [b, t + 2]
        keep = (t + 2 < lengths.to(rows.device)[b]).nonzero().squeeze(1)
        if len(keep) == 0:  # only one-token captions: no term, but a (zero) gradient for every parameter (DDP)
            return sum(p.sum() for p in self.L_f.parameters()) * 0.0
        targets = captions[b[keep], t[keep] + 2]
        return CrossEntropy.apply(self.L_f(deep[keep]), targets, label_smoothing)

    # -- incremental decoding ----------------------------------------------------------------------------------

    def init_state(self, feats: torch.Tensor) -> dict:
        """CaptionDecoder's state plus "fwd" = log q_{t-1} [B, V]: zeros, no forward prediction yet."""
        state = super().init_state(feats)
        return {**state, "fwd": state["h"].new_zeros(state["h"].size(0), self.config.vocab_size)}

    def step(self, tokens: torch.Tensor, state: dict):
        """tokens [B] (y_{t-1}) -> s_t [B, V] (log-probs: log_softmax(log p_t + mu log q_{t-1})), alpha [B, L],
        the new state (its "fwd" = log q_t)."""
        prev_fwd = state["fwd"]  # log q_{t-1} [B, V]
        deep, alpha, state = self._step_deep(tokens, state)
        logits = self.L_o(deep)  # log p_t up to its normaliser, which the log_softmax below removes
        if self.config.forward_weight:
            logits = logits + self.config.forward_weight * prev_fwd
        fwd = F.log_softmax(self.L_f(deep), dim=1)  # log q_t, for step t + 1
        return F.log_softmax(logits, dim=1), alpha, {**state, "fwd": fwd}


# ----------------------------------------------------------------------------------------------------------------
# the registry's entries (registered in capkit.decoders): "pf" = soft attention + PF, "lbpf" = Look-Back + PF (the
# paper's full model)

PF = DecoderSpec("Predict-Forward", PredictForwardDecoder, config=PredictForwardConfig, settings={"attention": "soft"})
LBPF = DecoderSpec("Look-Back + Predict-Forward", PredictForwardDecoder, config=PredictForwardConfig,
                   settings={"attention": "lookback"})
