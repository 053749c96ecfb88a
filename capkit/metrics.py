"""Caption and hashtag metrics, and the retrieval / frequency baselines scored by them.

Every text metric works on token sequences that the caller has already made (for example the
Okt ``word/Tag`` tokens such as ``바다/Noun``); the caller chooses and documents which token form
is compared. Two tokens match when they are the same string: nothing here lowercases, stems or
looks up synonyms.

Inputs: ``refs[i]`` is the list of reference token lists of image ``i`` (several when the data has
them) and ``hyps[i]`` the generated token list of image ``i``.

Conventions shared by every text metric:

- an empty reference is ignored; an image with no non-empty reference cannot be scored and is
  left out of every text metric (with a warning); ``n_images`` says how many were scored;
- an empty hypothesis scores 0 on every per-image score; in the corpus-level numbers
  (COCO BLEU, METEOR) it adds its reference length and no matches, as any short hypothesis does;
- an empty corpus gives NaN.

Two families:

- ``coco_text_scores``: the field's standard suite computed by pycocoevalcap (BLEU-1..4 corpus
  level, METEOR 1.5 corpus level, ROUGE-L with beta 1.2, CIDEr-D). pycocoevalcap's English PTB
  tokenizer is never used: every distinct token is replaced by an ASCII surrogate (``t0``,
  ``t1``, ...) and the space-joined surrogates go straight to the scorers, so METEOR's English
  normalisation, stemmer, synonyms and paraphrase table cannot touch the tokens (none of them
  knows a ``t<number>`` word) and all surrogates count as content words. On plain ASCII words
  without case, stem, synonym, paraphrase or function-word relations the numbers are exactly
  those of pycocoevalcap on the raw words.
- ``study_text_scores``: the 2019 study's own definitions (mean sentence BLEU-1 without
  smoothing, ROUGE-L F-measure with beta 8, exact-match METEOR via nltk), for a like-for-like
  comparison with its table.

CIDEr-D: pycocoevalcap's ``Cider`` class (reported by pycocoevalcap as "CIDEr") computes the
CIDEr-D variant of Vedantam et al. 2015: n = 1..4 averaged, tf-idf n-gram vectors of unstemmed
tokens, the candidate's n-gram weights clipped by the reference's (``min``), a Gaussian length
penalty with sigma = 6, the mean over references and the factor 10. The idf comes from the references of the images being scored,
so the score depends on the whole test set; with a single image every idf is log(1) - log(1) = 0
and CIDEr-D is 0.

This module imports ``fused`` (the CIDEr-D similarity matrix of MBR, array by array).
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import warnings
from collections import Counter
from contextlib import contextmanager

import numpy as np
from nltk.translate.bleu_score import sentence_bleu
from nltk.translate.meteor_score import meteor_score as nltk_meteor_score
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge, my_lcs

from capkit import fused

STUDY_ROUGE_BETA = 8.0
COCO_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
STUDY_KEYS = ("bleu1", "rouge_l", "meteor")


# ---------------------------------------------------------------- input checks and cleaning


def _check_tokens(seq, what: str) -> list[str]:
    """Return ``seq`` as a list of str tokens; refuse a bare string (a common mix-up)."""
    if isinstance(seq, str):
        raise TypeError(f"{what} must be a list of str tokens, not the string {seq!r:.80}")
    seq = list(seq)
    if not all(isinstance(tok, str) for tok in seq):
        raise TypeError(f"{what} must be a list of str tokens, got {seq!r:.80}")
    return seq


def _scorable(refs, hyps) -> tuple[list[list[list[str]]], list[list[str]]]:
    """Validate the inputs, drop empty references and images left without any reference."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} reference lists but {len(hyps)} hypotheses")
    kept_refs, kept_hyps = [], []
    for i, (image_refs, hyp) in enumerate(zip(refs, hyps)):
        if isinstance(image_refs, str) or (image_refs and isinstance(image_refs[0], str)):
            raise TypeError(f"refs[{i}] must be a list of token lists (one per reference)")
        hyp = _check_tokens(hyp, f"hyps[{i}]")
        image_refs = [_check_tokens(r, f"refs[{i}]") for r in image_refs]
        image_refs = [r for r in image_refs if r]
        if image_refs:
            kept_refs.append(image_refs)
            kept_hyps.append(hyp)
    skipped = len(hyps) - len(kept_hyps)
    if skipped:
        warnings.warn(f"{skipped} image(s) without a non-empty reference left out of text metrics")
    return kept_refs, kept_hyps


def surrogate_strings(refs, hyps) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Map every distinct token to an ASCII surrogate ``t<n>``, one map for refs and hyps.

    Returns pycocoevalcap's input dicts: ``gts[i]`` = list of space-joined reference strings,
    ``res[i]`` = one-element list with the space-joined hypothesis (``""`` when empty).
    """
    codes: dict[str, str] = {}

    def encode(tokens: list[str]) -> str:
        return " ".join(codes.setdefault(tok, f"t{len(codes)}") for tok in tokens)

    gts = {i: [encode(r) for r in image_refs] for i, image_refs in enumerate(refs)}
    res = {i: [encode(hyp)] for i, hyp in enumerate(hyps)}
    return gts, res


# ---------------------------------------------------------------- METEOR jar


def _close_meteor(meteor: Meteor) -> None:
    """Stop pycocoevalcap's METEOR subprocess and close its pipes (safe to call twice)."""
    if meteor.lock.locked():  # a failed compute_score leaves it held; its __del__ would hang
        meteor.lock.release()
    proc = meteor.meteor_p
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        try:
            pipe.close()
        except OSError:
            pass
    proc.kill()
    proc.wait()


@contextmanager
def meteor_scorer():
    """Start pycocoevalcap's METEOR 1.5 jar once; yield it and always stop it on exit.

    Yields ``None`` (with a warning) when Java is missing or the jar cannot start; the scores
    then carry NaN for METEOR. A scorer of one's own, stopped on exit; calls given none share
    the process's jar (:func:`shared_meteor`).
    """
    meteor = _start_meteor()
    try:
        yield meteor
    finally:
        if meteor is not None:
            _close_meteor(meteor)


def _start_meteor() -> Meteor | None:
    """A new METEOR jar; ``None``, with a warning, when Java is missing or the jar cannot start."""
    if shutil.which("java") is None:
        warnings.warn("java not found on PATH: METEOR is NaN", RuntimeWarning)
        return None
    try:
        return Meteor()
    except OSError as err:
        warnings.warn(f"METEOR jar did not start ({err}): METEOR is NaN", RuntimeWarning)
        return None


_SHARED_METEOR: dict = {}  # process id -> this process's jar (shared_meteor)


def shared_meteor() -> Meteor | None:
    """This process's METEOR jar, for the scoring calls given no scorer of their own: started on first use
    (the JVM and the paraphrase table take ~10 s here), reused by every later call, restarted if it died,
    stopped when the process exits (or by :func:`close_shared_meteor`). ``None``, with a warning, when Java is
    missing or the jar cannot start (METEOR is then NaN)."""
    if shutil.which("java") is None:  # (even with a jar running: no Java on PATH, no METEOR)
        return _start_meteor()  # None, with its warning
    meteor = _SHARED_METEOR.get(os.getpid())
    if meteor is not None and meteor.meteor_p.poll() is None:
        return meteor
    close_shared_meteor()
    meteor = _start_meteor()
    if meteor is None:
        return None
    if not _SHARED_METEOR:
        atexit.register(close_shared_meteor)
    _SHARED_METEOR[os.getpid()] = meteor
    return meteor


def close_shared_meteor() -> None:
    """Stop this process's shared METEOR jar, if it runs (a forked child never stops its parent's)."""
    meteor = _SHARED_METEOR.pop(os.getpid(), None)
    if meteor is not None:
        _close_meteor(meteor)


def _meteor_corpus(meteor: Meteor | None, gts: dict, res: dict) -> float:
    """Corpus METEOR from the jar (its own aggregate over summed statistics), NaN on failure."""
    if meteor is None:
        return math.nan
    try:
        score, _ = meteor.compute_score(gts, res)
        return float(score)
    except (OSError, ValueError) as err:  # jar died: broken pipe or an empty/garbled reply
        if meteor.lock.locked():
            meteor.lock.release()
        warnings.warn(f"METEOR jar failed ({err!r}): METEOR is NaN", RuntimeWarning)
        return math.nan


# ---------------------------------------------------------------- COCO caption metrics


def coco_text_scores(refs, hyps, meteor: Meteor | None = None) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D from pycocoevalcap on surrogate-coded tokens.

    ``refs``: list (per image) of lists of reference token lists; ``hyps``: list of token lists.
    ``meteor``: an open scorer from ``meteor_scorer()`` to use; when None, the process's
    :func:`shared_meteor` (started once, kept for the next calls).
    Returns ``{"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D",
    "n_images"}``. BLEU is corpus-level (``closest`` reference length; pycocoevalcap's epsilons
    leave tiny non-zero values where no n-gram matches), METEOR is the jar's aggregate over the
    summed statistics (the jar adds no fragmentation chunk for a perfectly matched caption),
    ROUGE-L (beta 1.2, best precision and best recall over references) and CIDEr-D are means over
    images.
    """
    refs, hyps = _scorable(refs, hyps)
    if not hyps:
        return {**{key: math.nan for key in COCO_KEYS}, "n_images": 0}
    gts, res = surrogate_strings(refs, hyps)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge = Rouge()
    rouge_l = [rouge.calc_score(res[i], gts[i]) if hyps[i] else 0.0 for i in res]
    cider, _ = Cider().compute_score(gts, res)  # empty hyp: no n-grams, so 0
    meteor_value = _meteor_corpus(shared_meteor() if meteor is None else meteor, gts, res)
    scores = {f"BLEU-{n + 1}": float(bleu[n]) for n in range(4)}
    scores.update({"METEOR": meteor_value, "ROUGE-L": float(np.mean(rouge_l)),
                   "CIDEr-D": float(cider), "n_images": len(hyps)})
    return scores


def cider_d(refs, hyps) -> float:
    """CIDEr-D alone (pycocoevalcap's ``Cider`` on surrogate-coded tokens, as in ``coco_text_scores``): the
    validation score that selects the best epoch of a text run. NaN for an empty corpus."""
    refs, hyps = _scorable(refs, hyps)
    if not hyps:
        return math.nan
    gts, res = surrogate_strings(refs, hyps)
    return float(Cider().compute_score(gts, res)[0])


# ---------------------------------------------------------------- CIDEr-D with fixed statistics


def _ngrams(tokens, n: int) -> Counter:
    tokens = list(tokens)
    return Counter(tuple(tokens[i:i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1))


class CiderD:
    """CIDEr-D (Vedantam et al. 2015) with document frequencies fixed from a reference corpus.

    Same formula as pycocoevalcap's ``Cider`` (n = 1..4, tf-idf vectors, the candidate's weights clipped by the
    reference's, Gaussian length penalty sigma 6, mean over references, x10); pycocoevalcap recomputes the
    document frequencies from whatever batch it scores, which would make a reward depend on its batch, so the
    statistics are kept here once. Built from the references of the images being scored, the scores equal
    pycocoevalcap's (tested). Tokens may be strings or ids.

    ``corpus``: per image, its list of reference token lists.
    """

    def __init__(self, corpus, n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df = Counter()
        for refs in corpus:
            self.df.update(set(g for ref in refs for g in _ngrams(ref, n)))
        self.log_docs = math.log(max(len(corpus), 1))
        self._vectors: dict = {}  # tuple(tokens) -> _vector: repeated samples and evidence are weighed once

    def _vector(self, tokens):
        """(per order, {n-gram: tf-idf weight}; the orders' norms; the length): read-only, shared by every caller
        that asks for the same tokens (the same object, from a memo of this CiderD's)."""
        key = tuple(tokens)
        vec = self._vectors.get(key)
        if vec is None:
            if len(self._vectors) >= 200_000:  # (long self-critical training: mostly captions seen once)
                self._vectors.clear()
            vec = self._vectors[key] = self._weigh(key)
        return vec

    def _weigh(self, tokens):
        vec = [dict() for _ in range(self.n)]
        norm = [0.0] * self.n
        for gram, tf in _ngrams(tokens, self.n).items():
            w = tf * (self.log_docs - math.log(max(1.0, self.df.get(gram, 0.0))))
            vec[len(gram) - 1][gram] = w
            norm[len(gram) - 1] += w * w
        return vec, [math.sqrt(x) for x in norm], len(tokens)

    def _sim(self, hyp, ref) -> float:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        penalty = math.exp(-((lh - lr) ** 2) / (2 * self.sigma ** 2))
        total = 0.0
        for k in range(self.n):
            val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
            if nh[k] and nr[k]:
                val /= nh[k] * nr[k]
            total += val * penalty
        return total / self.n

    def refs(self, refs) -> list:
        """Precomputed vectors of one image's references (to score many candidates against them)."""
        return [self._vector(r) for r in refs]

    def similarities(self, candidates, rows: int | None = None) -> np.ndarray:
        """[m, m]: CIDEr-D of candidate i (token lists) against candidate j alone (``fused.cider_similarities``);
        with ``rows`` r only the first r as hypotheses: [r, m]."""
        return fused.cider_similarities(self.refs(candidates), self.n, self.sigma, rows)

    def consensus(self, candidates, sims: np.ndarray | None = None, evidence=()) -> tuple[int, float]:
        """Minimum Bayes risk: the index of the candidate (token lists) with the highest mean CIDEr-D against the
        other candidates and the ``evidence`` (token lists that count as references but are never chosen, e.g.
        the references of the image's nearest training images), and that mean (the first on ties; a single
        candidate without evidence is its own choice, scored 0). ``sims``: the candidates' ``similarities``,
        when already computed (a prefix of a larger set's: ``sims[:m, :m]``; not with evidence). Equals
        :meth:`consensus_plain` (tested), from one [m, m + e] array instead of m (m + e) dictionary walks."""
        m, e = len(candidates), len(evidence)
        if m == 0 or m + e < 2:
            return 0, 0.0
        if e:
            sims = self.similarities(list(candidates) + list(evidence), rows=m)  # [m, m + e]
        else:
            sims = self.similarities(candidates) if sims is None else sims[:m, :m]
        scores = (sims.sum(1) - np.diag(sims[:, :m])) / (m - 1 + e)
        best = int(np.argmax(scores))
        return best, float(scores[best])

    def consensus_plain(self, candidates, evidence=()) -> tuple[int, float]:
        """:meth:`consensus` pair by pair through :meth:`score`: the readable definition it is tested against."""
        if not candidates or len(candidates) + len(evidence) < 2:
            return 0, 0.0
        vecs, extra = self.refs(candidates), self.refs(evidence) if evidence else []
        scores = [self.score(c, vecs[:j] + vecs[j + 1:] + extra) for j, c in enumerate(candidates)]
        best = max(range(len(scores)), key=scores.__getitem__)
        return best, float(scores[best])

    def score(self, hyp, refs) -> float:
        """CIDEr-D of one candidate against one image's references (token lists, or ``refs(...)``'s output)."""
        ref_vecs = refs if refs and isinstance(refs[0], tuple) else self.refs(refs)
        if not ref_vecs:
            return 0.0
        h = self._vector(hyp)
        return 10.0 * sum(self._sim(h, r) for r in ref_vecs) / len(ref_vecs)


def best_guess_tags(draws, max_tags: int) -> tuple[list[str], float]:
    """The hashtag set that maximises the expected F1 against a fresh draw, estimated from ``draws`` (one post's
    tag lists, drawn from a distribution of posts: the true scene's for the scene oracle, a model's for MBR
    decoding; tags may be strings or ids): tags ranked by the share of draws using them (ties: the tag
    string), then the top-m for the m in 1..``max_tags`` whose mean per-draw F1 against ``draws`` is highest (the
    smaller m on ties). Returns (the tags in rank order, that mean F1). No draw with a tag: ([], 0.0).
    """
    counts = Counter(t for d in draws for t in set(d))
    if not counts:
        return [], 0.0
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[: max(1, int(max_tags))]
    pos = {t: i for i, t in enumerate(ranked)}
    used = np.zeros((len(draws), len(ranked)))
    for j, d in enumerate(draws):
        for t in set(d):
            if t in pos:
                used[j, pos[t]] = 1.0
    hits = used.cumsum(axis=1)  # [draw, m - 1]: hits of the top-m set
    sizes = np.array([len(set(d)) for d in draws], dtype=float)[:, None]
    f1 = (2 * hits / (np.arange(1, len(ranked) + 1)[None, :] + sizes)).mean(axis=0)
    m = int(np.argmax(f1)) + 1
    return ranked[:m], float(f1[m - 1])


# ---------------------------------------------------------------- the study's definitions


class _IdentityStemmer:
    """Stand-in stemmer for nltk METEOR: leaves every token as it is."""

    def stem(self, word: str) -> str:
        return word


class _NoSynonyms:
    """Stand-in for nltk's wordnet reader: no synsets, so no synonym matches (no data needed)."""

    def synsets(self, word: str) -> list:
        return []


def _identity(token: str) -> str:
    return token


def study_bleu1(image_refs: list[list[str]], hyp: list[str]) -> float:
    """nltk ``sentence_bleu(refs, hyp, weights=(1,))`` without smoothing, as the study did.

    Clipped unigram precision times the brevity penalty (closest reference length). No smoothing,
    as in the study: a sentence without any matching token scores 0, and so does an empty one.
    """
    if not hyp:
        return 0.0
    with warnings.catch_warnings():  # nltk warns on every zero-match sentence
        warnings.filterwarnings("ignore", module="nltk.translate.bleu_score")
        return float(sentence_bleu(image_refs, hyp, weights=(1,)))


def study_rouge_l(image_refs: list[list[str]], hyp: list[str], beta: float = STUDY_ROUGE_BETA) -> float:
    """LCS F-measure ``(1 + b^2) P R / (R + b^2 P)`` with beta 8, best over the references."""
    best = 0.0
    for ref in image_refs:
        lcs = my_lcs(ref, hyp) if hyp else 0
        if lcs:
            p, r = lcs / len(hyp), lcs / len(ref)
            best = max(best, (1 + beta**2) * p * r / (r + beta**2 * p))
    return best


def study_meteor(image_refs: list[list[str]], hyp: list[str]) -> float:
    """nltk METEOR (alpha 0.9, beta 3, gamma 0.5) with exact matches only, best over references.

    No lowercasing, an identity stemmer and a wordnet stand-in without synsets: after the exact
    stage no identical pair is left, so the stem and synonym stages add nothing. nltk aligns
    greedily (not the jar's chunk-minimising search). An empty hypothesis scores 0.
    """
    if not hyp:
        return 0.0
    return float(nltk_meteor_score(image_refs, hyp, preprocess=_identity,
                                   stemmer=_IdentityStemmer(), wordnet=_NoSynonyms()))


def study_text_scores(refs, hyps) -> dict:
    """The study's text metrics, each the mean over images of a per-image score.

    Returns ``{"bleu1", "rouge_l", "meteor", "n_images"}`` (see ``study_bleu1``,
    ``study_rouge_l``, ``study_meteor``).
    """
    refs, hyps = _scorable(refs, hyps)
    per_image = {
        "bleu1": [study_bleu1(r, h) for r, h in zip(refs, hyps)],
        "rouge_l": [study_rouge_l(r, h) for r, h in zip(refs, hyps)],
        "meteor": [study_meteor(r, h) for r, h in zip(refs, hyps)],
    }
    scores = {key: float(np.mean(vals)) if vals else math.nan for key, vals in per_image.items()}
    scores["n_images"] = len(hyps)
    return scores


def text_scores(refs, hyps, meteor: Meteor | None = None) -> dict:
    """Study columns (``study_bleu1``, ``study_rouge_l``, ``study_meteor``) and the COCO suite
    (``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE-L``, ``CIDEr-D``) plus ``n_images``."""
    study = study_text_scores(refs, hyps)
    with warnings.catch_warnings():  # the same skip warning was just given by the study scores
        warnings.filterwarnings("ignore", message=".*left out of text metrics")
        coco = coco_text_scores(refs, hyps, meteor=meteor)
    scores = {f"study_{key}": study[key] for key in STUDY_KEYS}
    scores.update(coco)
    return scores


# ---------------------------------------------------------------- hashtags


def _distinct(tags) -> list[str]:
    """Hashtags in first-seen order, each once."""
    return list(dict.fromkeys(_check_tokens(tags, "hashtags")))


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def hashtag_scores(true, pred, ks=(1, 3, 5, 10)) -> dict:
    """The study's micro precision / recall / F1 over hashtag sets, macro F1, precision@k, recall@k.

    ``true[i]`` / ``pred[i]``: hashtags of image ``i`` (normalise '#', case, etc. before). Order
    and duplicates are ignored except for @k, which takes the first k distinct predictions.

    - ``precision``, ``recall``, ``f1``: micro (the study's): hits, predicted and true counts
      summed over images; 0/0 gives 0.
    - ``macro_f1``: mean per-image F1; an image with no true and no predicted hashtag scores 1,
      with exactly one of the two empty 0.
    - ``precision@k``: hits among the first k distinct predictions divided by k (fewer than k
      predictions count as misses), mean over all images.
    - ``recall@k``: those hits divided by the number of true hashtags, mean over the images that
      have at least one (``n_with_true`` of them; NaN when none).
    Also ``n_images``.
    """
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true hashtag lists but {len(pred)} predictions")
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {ks}")
    hits = n_pred = n_true = 0
    per_f1, at_p, at_r = [], {k: [] for k in ks}, {k: [] for k in ks}
    for t, p in zip(true, pred):
        t, p = set(_distinct(t)), _distinct(p)
        h = len(t & set(p))
        hits, n_pred, n_true = hits + h, n_pred + len(p), n_true + len(t)
        if not t and not p:
            per_f1.append(1.0)
        else:
            per_f1.append(_f1(h / len(p) if p else 0.0, h / len(t) if t else 0.0))
        for k in ks:
            h_k = len(t & set(p[:k]))
            at_p[k].append(h_k / k)
            if t:
                at_r[k].append(h_k / len(t))
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_true if n_true else 0.0
    scores = {"precision": precision, "recall": recall, "f1": _f1(precision, recall),
              "macro_f1": float(np.mean(per_f1)) if per_f1 else math.nan}
    for k in ks:
        scores[f"precision@{k}"] = float(np.mean(at_p[k])) if at_p[k] else math.nan
        scores[f"recall@{k}"] = float(np.mean(at_r[k])) if at_r[k] else math.nan
    scores["n_images"] = len(true)
    scores["n_with_true"] = sum(1 for t in true if t)
    return scores


# ---------------------------------------------------------------- baselines


def most_frequent_hashtags(train_hashtags, k: int) -> list[str]:
    """The k hashtags found in the most training posts (a post counts a tag once).

    Ties are broken alphabetically, so the result does not depend on the order of the posts.
    """
    counts = Counter(tag for tags in train_hashtags for tag in set(_check_tokens(tags, "hashtags")))
    return [tag for tag, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _as_matrix(feats, name: str) -> np.ndarray:
    """A 2-D float numpy array from a numpy array or torch tensor."""
    if hasattr(feats, "detach"):
        feats = feats.detach().cpu().numpy()
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be [items, dim] (pool grid features first), got {feats.shape}")
    return feats.astype(np.float64 if feats.dtype == np.float64 else np.float32, copy=False)


def nearest_neighbours(train_feats, query_feats, metric: str = "cosine", chunk: int = 1024) -> np.ndarray:
    """Index of the closest training item for every query: ``int64`` array of shape [M] (``nearest_k`` with k 1).

    ``metric``: ``"cosine"`` (largest cosine similarity; zero vectors have similarity 0) or
    ``"euclidean"`` (smallest L2 distance). Ties go to the lowest training index.
    """
    return nearest_k(train_feats, query_feats, 1, metric=metric, chunk=chunk)[:, 0]


def nearest_k(train_feats, query_feats, k: int, metric: str = "cosine", chunk: int = 1024) -> np.ndarray:
    """The ``k`` closest training items of every query, closest first: ``int64`` array [M, min(k, N)].

    ``metric`` as for ``nearest_neighbours``; ties go to the lower training index. Works on blocks of ``chunk``
    queries x ``chunk`` training items, keeping each query's best k so far, so memory stays bounded for large N.
    """
    train, query = _as_matrix(train_feats, "train_feats"), _as_matrix(query_feats, "query_feats")
    if train.shape[1] != query.shape[1]:
        raise ValueError(f"feature sizes differ: {train.shape[1]} vs {query.shape[1]}")
    if len(train) == 0:
        raise ValueError("no training items")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(int(k), len(train))
    if metric == "cosine":
        train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        query = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    elif metric != "euclidean":
        raise ValueError(f"unknown metric {metric!r}: use 'cosine' or 'euclidean'")
    sq_norms = (train**2).sum(axis=1)
    out = np.zeros((len(query), k), dtype=np.int64)
    for q0 in range(0, len(query), chunk):
        q = query[q0:q0 + chunk]
        best_val = np.empty((len(q), 0), dtype=q.dtype)  # [m, <=k] the best so far, closest first
        best_idx = np.empty((len(q), 0), dtype=np.int64)
        for t0 in range(0, len(train), chunk):
            # higher is closer: cosine similarity, or -(|t|^2 - 2 q.t) = -|q - t|^2 + |q|^2
            score = q @ train[t0:t0 + chunk].T  # [m, c]
            if metric == "euclidean":
                score = 2 * score - sq_norms[t0:t0 + chunk]
            idx = np.broadcast_to(np.arange(t0, t0 + score.shape[1]), score.shape)
            val, idx = np.concatenate([best_val, score], axis=1), np.concatenate([best_idx, idx], axis=1)
            order = np.lexsort((idx, -val))[:, :k]  # by closeness, then by the lower index
            best_val, best_idx = np.take_along_axis(val, order, 1), np.take_along_axis(idx, order, 1)
        out[q0:q0 + chunk] = best_idx
    return out


def random_texts(train_items: list, n: int, seed: int) -> list:
    """``n`` training items drawn uniformly with replacement; the same seed gives the same list."""
    if not len(train_items):
        raise ValueError("no training items to draw from")
    rng = np.random.default_rng(seed)
    return [train_items[i] for i in rng.integers(0, len(train_items), size=n)]
