"""What a run predicts: a post's text or its hashtags. Everything that differs between the two lives here, one
object each (``TEXT``, ``HASHTAG``; ``target(name)``), so the rest of capkit asks the target instead of
branching on its name:

| | text | hashtag |
|---|---|---|
| a record has one when | it has a text | it has hashtags |
| references of a record | each of its texts, tokenized | its hashtag set, as one list |
| decoded length | ``max_len`` tokens | ``max_hashtags`` tags, a tag never twice |
| score that picks the epoch | validation CIDEr-D (greedy) | validation micro F1 |
| test scores | BLEU-1..4, METEOR, ROUGE-L, CIDEr-D | F1 / precision / recall |
| MBR defaults | 20 samples at temperature 0.5 (CIDEr-D consensus) | 30 at 1.0 (expected-F1 set) |
| readable output | the detokenized text | ``#a #b`` |

Which records a run of a target learns from: :func:`keep` (the others are counted in the load report);
``python -m capkit.targets DATASET DATA_DIR [TARGET ...]`` prints the targets a dataset has training records for
(the Makefile skips the runs of the others).

This module imports ``data``, ``detok``, ``metrics`` and ``text``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from capkit import data as D
from capkit import metrics, text
from capkit.detok import Detokenizer, detokenize


@dataclass(frozen=True)
class Target:
    """A prediction target (``TrainConfig.target`` holds its ``name``); a new one is a subclass and an entry of
    TARGETS."""

    name: str
    plural: str  # what a record has of it, for messages ("texts", "hashtags")
    reference_unit: str  # what one reference is, for labels ("text", "post's hashtags")
    pool_unit: str  # what a retrieval baseline pools ("references", "posts")
    selection: str  # the history key whose highest value picks the best epoch
    selection_label: str  # how the progress line names it
    missing: str  # the skip reason of a record without one
    mbr_samples: int  # MBR: samples per image, unless the run says otherwise
    mbr_temperature: float
    forbid_repeats: bool  # search: a token at most once (a set of tags)
    # MBR: the CIDEr-D consensus of sequences (statistics of the training references, the nearest images'
    # references as evidence, beam's caption as a candidate: capkit.mbr), else the expected-F1 set of the samples
    mbr_consensus: bool

    def has(self, record) -> bool:
        """Whether ``record`` has something of this target to learn from."""
        raise NotImplementedError

    def references(self, records, config, progress: bool = False) -> tuple[list, object]:
        """Per record, the list of its reference token lists, and the tokenizer's statistics (or None)."""
        raise NotImplementedError

    def needs_detokenizer(self, config) -> bool:
        """Whether readable output needs a detokenizer fitted on the training texts (morpheme tokens)."""
        return False

    def detokenizer(self, config, records, token_lists) -> Detokenizer | None:
        """The detokenizer readable output needs (:meth:`needs_detokenizer`), fitted on the training ``records``'
        texts and their reference tokens ``token_lists``; None when it needs none."""
        if not self.needs_detokenizer(config):
            return None
        return Detokenizer.fit([t for r in records for t in r.texts], token_lists)

    def decode_len(self, config) -> int:
        raise NotImplementedError

    def raw_references(self, record) -> list[str]:
        """What a reader sees as the record's references (predictions.jsonl)."""
        raise NotImplementedError

    def readable(self, tokens: list[str], detok=None, tokenizer: str | None = None) -> str:
        raise NotImplementedError

    def words(self, tokens: list[str]) -> list[str]:
        """What a reader sees for each token (the attention viewer's labels): a word's surface form, or ``#tag``."""
        raise NotImplementedError

    def token_form(self, config) -> str:
        """How the tokens of the run's files are formed (its tokenizer, or ``hashtag``)."""
        raise NotImplementedError

    def val_score(self, refs, preds) -> dict:
        """The validation scores of decoded ``preds`` (token lists) against ``refs``; ``score`` selects."""
        raise NotImplementedError

    def test_scores(self, refs, preds, meteor=None) -> dict:
        """The test scores of ``preds`` (token lists) against ``refs`` (per record, its reference lists);
        ``meteor``: an open METEOR scorer to share (texts)."""
        raise NotImplementedError

    def prediction_fields(self, tokens: list[str], refs) -> dict:
        """The target's own fields of a predictions.jsonl line."""
        return {}

    def rescore(self, lines: list[dict], meteor=None) -> dict:
        """The test scores of ``predictions.jsonl`` lines, from the fields a reader sees and may edit."""
        return self.test_scores([x["reference_tokens"] for x in lines], [x["prediction_tokens"] for x in lines],
                                meteor=meteor)


class TextTarget(Target):
    def has(self, record) -> bool:
        return bool(record.texts)

    def references(self, records, config, progress=False):
        flat = [t for r in records for t in r.texts]
        toks = text.tokenize_all(flat, config.tokenizer, cache_dir=D.project_path(config.cache_dir) / "tokens",
                                 progress=progress)
        out, i = [], 0
        for r in records:
            out.append([list(t) for t in toks[i:i + len(r.texts)]])
            i += len(r.texts)
        return out, toks.stats

    def needs_detokenizer(self, config) -> bool:
        return config.tokenizer not in text.SPACED_TOKENIZERS

    def decode_len(self, config) -> int:
        return config.max_len

    def raw_references(self, record) -> list[str]:
        return list(record.texts)

    def readable(self, tokens, detok=None, tokenizer=None) -> str:
        return detok(tokens) if detok is not None else detokenize(tokens, tokenizer)

    def words(self, tokens) -> list[str]:
        return [text.split_token(t)[0] for t in tokens]

    def token_form(self, config) -> str:
        return config.tokenizer

    def val_score(self, refs, preds) -> dict:
        s = metrics.study_text_scores(refs, preds)
        cider = metrics.cider_d(refs, preds)  # against all of each image's references
        return {"score": cider, "cider": cider, "bleu1": s["bleu1"]}

    def test_scores(self, refs, preds, meteor=None) -> dict:
        return metrics.text_scores(refs, preds, meteor=meteor)


class HashtagTarget(Target):
    def has(self, record) -> bool:
        return bool(record.hashtags)

    def decode_len(self, config) -> int:
        return config.max_hashtags

    def references(self, records, config, progress=False):
        """Each record's reference list: its normalised tag set, cut at ``max_hashtags``."""
        return [[D.normalize_hashtags(r.hashtags)[: config.max_hashtags]] for r in records], None

    def raw_references(self, record) -> list[str]:
        return [" ".join("#" + t for t in record.hashtags)]

    def readable(self, tokens, detok=None, tokenizer=None) -> str:
        return " ".join("#" + t for t in tokens)

    def words(self, tokens) -> list[str]:
        return ["#" + t for t in tokens]

    def token_form(self, config) -> str:
        return "hashtag"

    def val_score(self, refs, preds) -> dict:
        s = metrics.hashtag_scores([r[0] for r in refs], preds)
        return {"score": s["f1"], "f1": s["f1"], "precision": s["precision"], "recall": s["recall"]}

    def test_scores(self, refs, preds, meteor=None) -> dict:
        return metrics.hashtag_scores([r[0] for r in refs], preds)

    def prediction_fields(self, tokens, refs) -> dict:
        return {"hashtags": tokens, "true_hashtags": refs[0]}

    def rescore(self, lines, meteor=None) -> dict:
        return metrics.hashtag_scores([x["true_hashtags"] for x in lines], [x["hashtags"] for x in lines])


TEXT = TextTarget("text", plural="texts", reference_unit="text", pool_unit="references", selection="val_cider", selection_label="CIDEr-D", missing="no_text", mbr_samples=20,
              mbr_temperature=0.5, forbid_repeats=False, mbr_consensus=True)
HASHTAG = HashtagTarget("hashtag", plural="hashtags", reference_unit="post's hashtags", pool_unit="posts",
                        selection="val_f1", selection_label="F1", missing="no_hashtags", mbr_samples=30,
                 mbr_temperature=1.0, forbid_repeats=True, mbr_consensus=False)
TARGETS = {t.name: t for t in (TEXT, HASHTAG)}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, not {name!r}")
    return TARGETS[name]


def keep(records: list, name: str, report: D.LoadReport | None = None) -> list:
    """The records that have what target ``name`` needs; the others are counted in ``report`` (its ``missing``)."""
    what = target(name)
    out = []
    for r in records:
        if what.has(r):
            out.append(r)
        elif report is not None:
            report.skip(what.missing, r.key)
    return out


def with_records(dataset: str, data_dir, names=("text", "hashtag"), seed: int = 0) -> list[str]:
    """The targets of ``names`` that the data has training records for (texts, hashtags)."""
    records, _ = D.load(dataset, data_dir, seed=seed, check=False)
    return [t for t in names if any(r.split == "train" for r in keep(records, t))]


def main(argv=None) -> int:
    """``python -m capkit.targets DATASET DATA_DIR [TARGET ...]``: print the targets the data has training records
    for (a line on stderr for each one it has not: the Makefile skips those runs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    wanted = args[2:] or list(TARGETS)
    kept = with_records(args[0], args[1], wanted)
    for t in wanted:
        if t not in kept:
            print(f"SKIPPED: target {t}: {args[0]} at {args[1]} has no training records with {target(t).plural}",
                  file=sys.stderr)
    print(" ".join(kept))
    return 0 if kept else 1


if __name__ == "__main__":
    raise SystemExit(main())
