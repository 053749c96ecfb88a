"""Pretrained word vectors (a fastText ``.vec`` file) as a decoder's input embedding: ``TrainConfig.word_vectors``.

This module imports ``text``.
"""

from __future__ import annotations

from itertools import chain

from capkit.text import PAD_ID, SPECIALS, Vocab, split_token


def _vector_keys(token: str) -> list[str]:
    """Words to look for in a .vec file, best first: the token, its surface form, without '#', lower case."""
    surface, _ = split_token(token)
    keys = [token, surface, surface.lstrip("#"), surface.lower(), surface.lstrip("#").lower()]
    return [k for k in dict.fromkeys(keys) if k]


def load_word_vectors(vec_path, vocab: Vocab, dim: int | None = None, seed: int = 0, init_std: float = 0.1,
                      max_words: int | None = None):
    """Embedding matrix [len(vocab), dim] from a fastText ``.vec`` text file, read line by line.

    A vocabulary token matches the file's word exactly, else by its surface form (``바다/Noun`` -> ``바다``),
    then without a leading '#', then in lower case. Rows not found get N(0, init_std) values from `seed`;
    the ``<pad>`` row is zero. `max_words` stops after that many vectors (files list frequent words first).
    Returns (matrix, report) with report ``{found, total, coverage, dim, path}``; total excludes the specials.
    """
    import torch

    wanted: dict[str, list[tuple[int, int]]] = {}  # file word -> [(row, rank of this key for that row)]
    for row, token in enumerate(vocab.itos):
        if token in SPECIALS:
            continue
        for rank, key in enumerate(_vector_keys(token)):
            wanted.setdefault(key, []).append((row, rank))
    best_rank = {}
    vectors = {}
    with open(vec_path, encoding="utf-8", errors="replace") as f:
        first = f.readline().split()
        if len(first) == 2 and all(p.isdigit() for p in first):
            file_dim, lines = int(first[1]), []
        else:  # no header: the first line is already a vector
            file_dim, lines = len(first) - 1, [" ".join(first)]
        if dim is not None and dim != file_dim:
            raise ValueError(f"{vec_path} holds {file_dim}-dimensional vectors, not {dim}")
        dim = file_dim
        for n, line in enumerate(chain(lines, f)):
            if max_words is not None and n >= max_words:
                break
            word = line.split(" ", 1)[0]
            if word not in wanted:
                continue
            parts = line.rstrip().split(" ")
            if len(parts) > dim + 1:  # a word with spaces in it
                word = " ".join(parts[: len(parts) - dim])
                if word not in wanted:
                    continue
            values = [float(v) for v in parts[-dim:]]
            if len(values) != dim:
                continue
            for row, rank in wanted[word]:
                if rank < best_rank.get(row, len(_vector_keys(vocab.itos[row]))):
                    best_rank[row] = rank
                    vectors[row] = values
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(len(vocab), dim, generator=generator) * init_std
    matrix[PAD_ID] = 0.0
    for row, values in vectors.items():
        matrix[row] = torch.tensor(values, dtype=torch.float32)
    total = sum(1 for t in vocab.itos if t not in SPECIALS)
    report = {"found": len(vectors), "total": total, "coverage": len(vectors) / total if total else 0.0,
              "dim": dim, "path": str(vec_path)}
    return matrix, report
