"""A run's model, untrained: its decoder from the registry with the run's sizes and options, pretrained word
vectors in its input embedding when the run names a file, and, under torchrun, the DDP wrapper training steps.

This module imports ``dist``, ``encoders``, ``models``, ``settings`` and ``word_vectors``.
"""

from __future__ import annotations

import torch

from capkit import dist, encoders, models, word_vectors
from capkit.settings import TrainConfig


def build_model(config: TrainConfig, vocab_size: int) -> torch.nn.Module:
    """The run's decoder (``config.decoder``, from the registry), untrained, with the run's sizes."""
    return models.decoder_spec(config.decoder).build(
        options=config.decoder_options.get(config.decoder), vocab_size=vocab_size,
        encoder_dim=encoders.ENCODERS[config.encoder].dim, embed_dim=config.embed_dim,
        attention_dim=config.attention_dim, decoder_dim=config.decoder_dim, dropout=config.dropout, gate=config.gate)


def load_word_vectors(model: torch.nn.Module, config: TrainConfig, vocab) -> dict | None:
    """``config.word_vectors`` (a fastText ``.vec`` file) into the model's input embedding, frozen when
    ``config.freeze_embeddings``; returns the coverage report (None when the run names no file)."""
    if not config.word_vectors:
        return None
    matrix, report = word_vectors.load_word_vectors(config.word_vectors, vocab, dim=config.embed_dim,
                                                    seed=config.seed)
    model.load_embeddings(matrix, freeze=config.freeze_embeddings)
    return report


def distributed(model: torch.nn.Module, device: torch.device):
    """``model`` itself in one process; under torchrun its :class:`capkit.models.Objective` wrapped in
    DistributedDataParallel (which also makes every rank start from rank 0's weights)."""
    if not dist.active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    devices = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(models.Objective(model), device_ids=devices)
