"""Corpus statistics of the texts and hashtags: what ``notebooks/02_vocabulary.ipynb`` shows (the tables are pandas
DataFrames): a tokenized corpus per split, parts of speech, frequent tokens, the vocabulary's coverage at each
minimum frequency, out-of-vocabulary tokens, detokenizer round trips, two tokenizers side by side, spacing scores
and the token cache's speed-up.

This module imports ``data``, ``detok`` and ``text``.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from capkit.data import SPLITS, normalize_hashtags
from capkit.detok import DROP_WHEN_READING, detokenize, glue_flags
from capkit.text import (TokenizerUnavailable, TokenizeStats, Vocab, get_tokenizer, oov_rate, resolve_tokenizer,
                         split_token, tokenize_all)


@dataclass
class Corpus:
    """A dataset's texts with their tokens and its hashtags, per split (made by `tokenize_records`)."""

    tokenizer: str
    texts: dict  # split -> raw texts (a post with several texts gives each of them)
    tokens: dict  # split -> token lists, aligned with `texts`
    hashtags: dict  # split -> hashtag token lists (`data.normalize_hashtags`), one per post that has hashtags
    stats: TokenizeStats

    @property
    def splits(self) -> list[str]:
        return list(self.texts)

    def sizes(self):
        """Per split: posts with hashtags, texts, tokens, hashtags (a DataFrame)."""
        import pandas as pd

        return pd.DataFrame({s: {"texts": len(self.texts[s]), "tokens": sum(map(len, self.tokens[s])),
                                 "posts with hashtags": len(self.hashtags[s]),
                                 "hashtags": sum(map(len, self.hashtags[s]))} for s in self.splits})


def tokenize_records(records, tokenizer="okt", cache_dir=None, progress: bool = False) -> Corpus:
    """Tokenize the texts of records (anything with ``.texts``, ``.hashtags`` and ``.split``) through the cache.

    Splits come in the order train, val, test, then any other. Hashtags are `data.normalize_hashtags`'s, never split.
    ``tokenizer="auto"`` is resolved from the texts (:func:`resolve_tokenizer`); the corpus names the one used.
    """
    records = list(records)
    if tokenizer == "auto":
        tokenizer = resolve_tokenizer("auto", "", [t for r in records[:2000] for t in r.texts])
    if isinstance(tokenizer, str):
        tokenizer = get_tokenizer(tokenizer)
    present = {r.split for r in records}
    splits = [s for s in SPLITS if s in present] + sorted(present - set(SPLITS), key=str)
    texts = {s: [t for r in records if r.split == s for t in r.texts] for s in splits}
    flat = tokenize_all([t for s in splits for t in texts[s]], tokenizer, cache_dir, progress=progress)
    tokens, i = {}, 0
    for s in splits:
        tokens[s] = [list(t) for t in flat[i : i + len(texts[s])]]
        i += len(texts[s])
    hashtags = {s: [tags for r in records if r.split == s if (tags := normalize_hashtags(r.hashtags))] for s in splits}
    return Corpus(tokenizer.name, texts, tokens, hashtags, flat.stats)


def pos_distribution(token_lists, examples: int = 4):
    """Tokens per part of speech (``word/POS`` tokens; ``-`` for tokens without a tag), most frequent first.

    Columns: tokens, share (of all tokens), types (distinct tokens), examples (the most frequent surfaces).
    """
    import pandas as pd

    counts = Counter(chain.from_iterable(token_lists))
    rows: dict[str, dict] = {}
    for token, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        surface, tag = split_token(token)
        row = rows.setdefault(tag or "-", {"tokens": 0, "types": 0, "examples": []})
        row["tokens"] += n
        row["types"] += 1
        if len(row["examples"]) < examples:
            row["examples"].append(surface)
    total = sum(counts.values())
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["tokens", "types", "examples"])
    table.insert(1, "share", table["tokens"] / total if total else 0.0)
    table["examples"] = table["examples"].map(", ".join)
    return table.sort_values("tokens", ascending=False, kind="stable").rename_axis("pos")


def top_tokens(token_lists, n: int = 20, pos=None):
    """The `n` most frequent tokens (ties: by token): count, share of all tokens, and `docs`, the number of lists
    (texts, or posts for hashtags) holding the token, with `doc_share`. ``word/POS`` tokens get surface and pos.
    `pos` (a set of Okt tags) keeps only tokens with those parts of speech (shares stay of all tokens)."""
    import pandas as pd

    token_lists = list(token_lists)
    counts = Counter(chain.from_iterable(token_lists))
    docs = Counter(chain.from_iterable(set(tokens) for tokens in token_lists))
    total = sum(counts.values())
    rows = []
    for token, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(rows) == n:
            break
        surface, tag = split_token(token)
        if pos is not None and tag not in pos:
            continue
        row = {"token": token} if tag is None else {"token": token, "surface": surface, "pos": tag}
        rows.append({**row, "count": count, "share": count / total, "docs": docs[token],
                     "doc_share": docs[token] / len(token_lists)})
    table = pd.DataFrame(rows, columns=["token", "surface", "pos", "count", "share", "docs", "doc_share"])
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    return table.dropna(axis=1, how="all")


def vocab_coverage(train_lists, eval_lists: dict, min_freqs=range(1, 11), max_size: int | None = None):
    """Vocabulary size and coverage against ``min_freq``, the vocabularies built from `train_lists` only.

    `eval_lists` maps a split name to its token lists. Columns: vocab_size (with the 4 specials), kept_types,
    train_coverage (share of training tokens the vocabulary holds), then ``oov_<split>`` for each split.
    """
    import pandas as pd

    train_lists = list(train_lists)
    rows = []
    for min_freq in min_freqs:
        vocab = Vocab.build(train_lists, min_freq=min_freq, max_size=max_size)
        row = {"min_freq": min_freq, "vocab_size": len(vocab), "kept_types": vocab.counts["kept_types"],
               "train_coverage": vocab.counts["kept_token_share"]}
        row.update({f"oov_{split}": oov_rate(vocab, lists) for split, lists in eval_lists.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("min_freq")


def vocab_summary(vocab: Vocab, eval_lists: dict) -> dict:
    """A vocabulary's size (with specials), its build counts (`Vocab.counts`) and ``oov_<split>`` for each split
    of `eval_lists` (split name -> token lists)."""
    return {"size": len(vocab), **vocab.counts,
            **{f"oov_{split}": oov_rate(vocab, lists) for split, lists in eval_lists.items()}}


def top_oov(vocab: Vocab, token_lists, n: int = 15):
    """The `n` most frequent tokens of `token_lists` that `vocab` lacks, with their count (a DataFrame)."""
    import pandas as pd

    counts = Counter(t for tokens in token_lists for t in tokens if t not in vocab.stoi)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return pd.DataFrame(rows, columns=["token", "count"])


def _folded(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def roundtrip_examples(texts, token_lists, detokenizer=None, n: int = 8, seed: int | None = None):
    """`n` texts (the first ones, or a random choice by `seed`, kept in order) next to their tokens and the
    readable text made back from the tokens.

    `detokenizer` is a fitted Detokenizer (or any callable tokens -> text); None uses the rules (`detokenize`).
    ``identical``: the readable text equals the source with white space folded (Okt's normalisation, such as
    ㅋㅋㅋㅋㅋ -> ㅋㅋㅋ, makes some differ by design).
    """
    import pandas as pd

    import random

    detokenizer = detokenizer or detokenize
    pairs = list(zip(texts, token_lists))
    if seed is not None and len(pairs) > n:
        pairs = [pairs[i] for i in sorted(random.Random(seed).sample(range(len(pairs)), n))]
    rows = []
    for source, tokens in pairs[:n]:
        readable = detokenizer(tokens)
        rows.append({"text": source, "tokens": " ".join(tokens), "readable": readable,
                     "identical": readable == _folded(source)})
    return pd.DataFrame(rows)


def compare_tokenizers(texts, tokenizers=("okt", "kiwi")):
    """The same texts through several tokenizers side by side (a DataFrame, one row a text): for each tokenizer
    its tokens (``<name> tokens``), their count and the readable text the spacing rules make back from them
    (``<name> readable``, `detokenize`). A tokenizer that cannot run here is left out; ``.attrs["unavailable"]``
    says which and why."""
    import pandas as pd

    texts = list(texts)
    table = pd.DataFrame({"text": texts})
    unavailable = {}
    for name in tokenizers:
        try:
            tokenizer = get_tokenizer(name)
            token_lists = [tokenizer(t) for t in texts]
        except TokenizerUnavailable as err:
            unavailable[name] = str(err)
            continue
        table[f"{name} tokens"] = [" ".join(tokens) for tokens in token_lists]
        table[f"{name} n"] = [len(tokens) for tokens in token_lists]
        table[f"{name} readable"] = [detokenize(tokens, name) for tokens in token_lists]
    table.attrs["unavailable"] = unavailable
    return table


def spacing_scores(texts, token_lists, detokenizers: dict):
    """How well each detokenizer (name -> callable tokens -> text) restores the spacing of the source texts.

    Columns: texts; identical (share of texts given back exactly, white space folded); boundaries (token
    boundaries that can be aligned in the source and the output); boundary_accuracy (share of those spaced
    as in the source).
    """
    import pandas as pd

    texts, token_lists = list(texts), list(token_lists)
    rows = {}
    for name, detok in detokenizers.items():
        same = right = seen = 0
        for source, tokens in zip(texts, token_lists):
            tokens = [t for t in tokens if t not in DROP_WHEN_READING]
            readable = detok(tokens)
            same += readable == _folded(source)
            surfaces = [split_token(t)[0] for t in tokens]
            for truth, guess in zip(glue_flags(source, surfaces), glue_flags(readable, surfaces)):
                if truth is not None and guess is not None:
                    seen += 1
                    right += truth == guess
        rows[name] = {"texts": len(texts), "identical": same / len(texts) if texts else 0.0,
                      "boundaries": seen, "boundary_accuracy": right / seen if seen else 0.0}
    return pd.DataFrame.from_dict(rows, orient="index")


def cache_speedup(texts, tokenizer="okt", cache_dir=None, warmup: int = 200):
    """Tokenize `texts` twice through `tokenize_all`: cold (an empty cache) and again from that cache.

    First, untimed, the tokenizer runs on up to `warmup` of the texts without the cache: Okt's JVM start and its
    just-in-time compilation (the first few hundred texts run ~4x slower) are left out, so ``cold`` is the
    steady rate of a long run whatever this process tokenized before. `cache_dir` (default: a temporary
    folder, deleted afterwards) must hold no cache for these texts. Rows cold and cached; columns as
    TokenizeStats plus ``speedup`` (tokens per second relative to the cold run).
    """
    import tempfile

    import pandas as pd

    if isinstance(tokenizer, str):
        tokenizer = get_tokenizer(tokenizer)
    texts = list(texts)
    for text in ["준비 완료"] + texts[:warmup]:
        tokenizer(text)
    with tempfile.TemporaryDirectory(prefix="capkit-tokens-") as tmp:
        where = Path(cache_dir) if cache_dir is not None else Path(tmp)
        cold = tokenize_all(texts, tokenizer, where).stats
        if cold.hits:
            raise ValueError(f"{where} already caches some of these texts: the cold run would not be cold")
        cached = tokenize_all(texts, tokenizer, where).stats
    table = pd.DataFrame([cold.as_dict(), cached.as_dict()], index=["cold", "cached"])
    table["speedup"] = table["tokens_per_second"] / table.loc["cold", "tokens_per_second"]
    return table
