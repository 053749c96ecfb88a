"""The oracle rows of the results tables (the embedded dataset only): references a model is read against, not
baselines to beat (see :mod:`capkit.baselines` for what each row means and how the tables mark them).

- :func:`oracle_predictions` (``oracle``): the dataset's writer writes each test post again from the image's TRUE
  scene with a fresh draw.
- :func:`oracle_best_predictions` (``oracle_best``, the ceiling): the best guess from many such draws (hashtags:
  the top-m tags by share of draws; texts: the draw with the highest mean CIDEr-D against the others).
- :func:`oracle_trained_predictions` (``oracle_trained``, hashtags): the set model trained on the scenes' facts
  instead of the pictures, with the runs' epoch loop.

Every row is None (never partial) unless each record it needs has a scene in ``<data_dir>/manifest.jsonl``. The
writer's posts become records as ``data.load_manifest`` makes them (:func:`capkit.sample.written_record`) and are
tokenized by ``prepare.reference_tokens`` with the run's config, as the references are.

This module imports ``loops``, ``metrics``, ``multilabel``, ``prepare``, ``sample`` and ``settings``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from capkit import loops, metrics, multilabel, sample, settings
from capkit.prepare import Prepared, reference_tokens

ORACLE_TAG_DRAWS = 200  # oracle_best: writer draws per test post, hashtags
ORACLE_TEXT_DRAWS = 30  # ... and texts (each one Okt-tokenized: ~60-80 s cold for 440 posts, cached after)


def _oracle_manifest(prep: Prepared, split: str) -> Path | None:
    config = prep.config
    manifest = config.data_path / "manifest.jsonl"
    if config.dataset != "sample" or not prep.records[split] or not manifest.is_file():
        return None
    return manifest


def oracle_predictions(prep: Prepared, split: str = "test") -> dict | None:
    """The scene oracle's token lists for the records of ``split`` (see the module notes), or None when the data is
    not the embedded dataset or some record has no scene in ``<data_dir>/manifest.jsonl`` (never a partial oracle).

    The oracle's posts become records the way ``data.load_manifest`` makes them (same text cleaning and hashtag
    normalisation) and are tokenized by ``reference_tokens`` with the run's config: the same tokenizer and
    token cache as the references, hashtags cut to ``max_hashtags``.
    """
    config = prep.config
    recs = prep.records[split]
    manifest = _oracle_manifest(prep, split)
    if manifest is None:
        return None
    posts = sample.oracle_posts(manifest, [r.key for r in recs], seed=config.seed)
    if any(r.key not in posts for r in recs):
        return None
    written = [sample.written_record(r, texts=[posts[r.key]["text"]], hashtags=posts[r.key]["hashtags"]) for r in recs]
    tokens, _ = reference_tokens(written, config)
    return {"tokens": [list(refs[0]) if refs else [] for refs in tokens], "seed": config.seed,
            "posts": [w.text if config.target == "text" else w.hashtags for w in written]}


ORACLE_TRAINED_EPOCHS = 16  # oracle_trained: the set runs' epochs (the Makefile's SET_EPOCHS), patience as theirs
_ORACLE_TRAINED: dict = {}  # oracle_trained_predictions of this process, by what they depend on (not the encoder)


def oracle_trained_predictions(prep: Prepared, split: str = "test") -> dict | None:
    """Hashtags: the tags of the set model (capkit.multilabel) told each image's TRUE scene instead of reading it
    (see the module notes), or None for texts, for other data, or when a training, validation or ``split`` record
    has no scene in ``<data_dir>/manifest.jsonl`` (never a partial oracle).

    The model is ``MultilabelTagger`` with one region per image: the multi-hot of its scene's facts over
    ``sample.SCENE_FACTS``. It is trained as ``make run`` trains the set runs (``loops.train_epoch`` on the
    training posts' tags, batch 32, Adam at the default cosine schedule over ``ORACLE_TRAINED_EPOCHS``, early
    stop after ``patience`` epochs without a better validation F1); the epoch and the output rule are chosen on
    validation (``multilabel.choose_rule``). Deterministic per seed (the global torch RNG is restored after).
    Returns ``{"tokens", "epoch", "rule", "facts", "seed"}``.
    """
    config = prep.config
    manifest = _oracle_manifest(prep, split)
    if config.target != "hashtag" or manifest is None or not prep.records["val"]:
        return None
    splits = ("train", "val", split)
    keys = [r.key for s in splits for r in prep.records[s]]
    memo = (str(manifest), manifest.stat().st_mtime_ns, tuple(keys), config.seed, tuple(prep.vocab.itos),
            config.max_hashtags)
    if memo in _ORACLE_TRAINED:
        return copy.deepcopy(_ORACLE_TRAINED[memo])
    facts = sample.scene_facts(manifest, keys)
    if any(k not in facts for k in keys):
        return None
    index = {f: i for i, f in enumerate(sample.SCENE_FACTS)}
    told = {}  # image -> [1, F]: the one region the model reads
    for s in splits:
        for r in prep.records[s]:
            told[r.image] = torch.zeros(1, len(index))
            told[r.image][0, [index[f] for f in facts[r.key]]] = 1.0

    def features(images):  # [B, 1, F], in place of the encoder's grid
        return torch.stack([told[i] for i in images])

    tc = settings.TrainConfig(decoder="multilabel", target="hashtag", seed=config.seed, epochs=ORACLE_TRAINED_EPOCHS,
                           max_hashtags=config.max_hashtags, device="cpu")
    true = [refs[0] if refs else [] for refs in prep.tokens["val"]]
    val_images = [r.image for r in prep.records["val"]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        # (one region: every pooling is the same; "mean" is the plain one)
        model = multilabel.MultilabelTagger(multilabel.MultilabelConfig(len(prep.vocab), len(index), pooling="mean"))
        optimizer = loops.adam(list(model.parameters()), tc.lr)
        pairs = prep.pairs("train")
        best, bad = None, 0
        for epoch in range(1, tc.epochs + 1):
            for group in optimizer.param_groups:
                group["lr"] = tc.lr_at(epoch)
            loops.train_epoch(model, optimizer, features, pairs, tc, epoch, torch.device("cpu"))
            rule = multilabel.choose_rule(model.scores(features(val_images)), true, max_k=tc.max_hashtags,
                                          labels=prep.vocab.itos)
            if best is None or rule["val_f1"] > best["rule"]["val_f1"]:
                best, bad = {"epoch": epoch, "rule": rule, "weights": copy.deepcopy(model.state_dict())}, 0
            else:
                bad += 1
                if bad >= tc.patience:
                    break
        model.load_state_dict(best["weights"])
        probs = model.scores(features([r.image for r in prep.records[split]]))
    ids = multilabel.apply_rule(probs, best["rule"])
    out = {"tokens": [[prep.vocab.itos[i] for i in row] for row in ids], "epoch": best["epoch"],
           "rule": best["rule"], "facts": len(index), "seed": config.seed}
    _ORACLE_TRAINED[memo] = copy.deepcopy(out)
    return out


_ORACLE_BEST: dict = {}  # oracle_best_predictions of this process, by what they depend on (not the encoder)


def oracle_best_predictions(prep: Prepared, split: str = "test", tag_draws: int | None = None,
                            text_draws: int | None = None) -> dict | None:
    """The scene oracle's best guess for the records of ``split`` (see the module notes), or None where
    ``oracle_predictions`` gives None (never a partial oracle).

    ``tag_draws`` / ``text_draws``: draws per record (default ``ORACLE_TAG_DRAWS`` / ``ORACLE_TEXT_DRAWS``, read
    at call time). The draws become records as ``data.load_manifest`` makes them and are tokenized by
    ``reference_tokens`` with the run's config, as the references are. Hashtags: ``metrics.best_guess_tags``
    (at most ``max_hashtags``); texts: ``consensus_draw`` with CIDEr-D document frequencies from the training
    references.
    """
    config = prep.config
    recs = prep.records[split]
    manifest = _oracle_manifest(prep, split)
    if manifest is None:
        return None
    hashtags = config.target == "hashtag"
    n = int(ORACLE_TAG_DRAWS if tag_draws is None else tag_draws) if hashtags else \
        int(ORACLE_TEXT_DRAWS if text_draws is None else text_draws)
    # the same for every encoder's runs (05 scores the baselines of each encoder): computed once a process
    memo = (str(manifest), manifest.stat().st_mtime_ns, tuple(r.key for r in recs), config.seed, n, config.target,
            config.tokenizer, config.max_hashtags, config.max_len, config.cache_dir)
    if memo in _ORACLE_BEST:
        return copy.deepcopy(_ORACLE_BEST[memo])
    draws = sample.oracle_draws(manifest, [r.key for r in recs], seed=config.seed, n=n)
    if any(r.key not in draws for r in recs):
        return None
    out = {"draws": n, "seed": config.seed}
    if hashtags:  # one record per draw: its hashtags normalised, tokenized and cut as a reference's
        written = [sample.written_record(r, texts=[], hashtags=p["hashtags"]) for r in recs for p in draws[r.key]]
        toks = [refs[0] if refs else [] for refs in reference_tokens(written, config)[0]]
        guesses = [metrics.best_guess_tags(toks[i * n:(i + 1) * n], config.max_hashtags) for i in range(len(recs))]
        out.update(tokens=[g[0] for g in guesses], rule="top-m by share of draws, m maximising mean F1 vs the draws",
                   expected_f1=float(np.mean([g[1] for g in guesses])))
        _ORACLE_BEST[memo] = copy.deepcopy(out)
        return out
    # texts: one record per test record holding its n drawn texts, cleaned and tokenized as references
    written = [sample.written_record(r, texts=[p["text"] for p in draws[r.key]], hashtags=[]) for r in recs]
    toks, _ = reference_tokens(written, config)
    cider = metrics.CiderD(prep.tokens["train"])
    chosen = [cider.consensus(t) if t else (None, 0.0) for t in toks]
    out.update(tokens=[list(t[j]) if j is not None else [] for t, (j, _) in zip(toks, chosen)],
               rule="the draw with the highest mean CIDEr-D against the other draws (train document frequencies)",
               consensus_cider=float(np.mean([c[1] for c in chosen])),
               posts=[w.texts[j] if j is not None else "" for w, (j, _) in zip(written, chosen)])
    _ORACLE_BEST[memo] = copy.deepcopy(out)
    return out
