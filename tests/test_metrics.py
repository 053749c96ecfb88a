"""Tests for capkit.metrics: hand-computed small cases, agreement with nltk / pycocoevalcap called
directly, and the edge cases (empty prediction or reference, long prediction, repeated hashtags,
several references, Korean tokens with '/')."""

import math

import numpy as np
import pytest
import torch
from nltk.translate.bleu_score import sentence_bleu
from nltk.translate.meteor_score import meteor_score
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from capkit import metrics as M

# In the CIDEr-D comments, L2 = log 2: the idf of an n-gram in the references of 1 of 2 images.


@pytest.fixture()
def jar():
    """The process's shared METEOR jar (started once; again only after a test stopped it); None without Java."""
    return M.shared_meteor()


def needs_java(jar):
    if jar is None:
        pytest.skip("java is not available")


def toks(text):
    return text.split()


# ---------------------------------------------------------------- study BLEU-1


def test_study_bleu1_by_hand():
    # 3 of 4 unigrams match, equal lengths so no brevity penalty: 3/4
    assert M.study_bleu1([toks("a b c d")], toks("a b x d")) == pytest.approx(0.75)
    # all match but hyp has 2 tokens vs 4: BP = exp(1 - 4/2) = exp(-1)
    assert M.study_bleu1([toks("a b c d")], toks("a b")) == pytest.approx(math.exp(-1))
    # several references: x from ref 2, b from ref 1 -> 2/2; closest ref length 2 -> BP 1
    assert M.study_bleu1([toks("a b c"), toks("x y")], toks("x b")) == pytest.approx(1.0)
    # longer than every reference: a clipped to 1 (max count in one ref), e unmatched:
    # (a1 + b1 + c1 + d1) / 6; closest ref length 3 < 6 -> BP 1
    assert M.study_bleu1([toks("a b"), toks("a c d")], toks("a b c d e a")) == pytest.approx(4 / 6)
    assert M.study_bleu1([toks("a b")], []) == 0.0
    assert M.study_bleu1([toks("a b")], toks("x y")) == 0.0


def test_study_bleu1_matches_nltk():
    cases = [([toks("the cat sat on a mat")], toks("the cat is on the mat")),
             ([toks("one two three"), toks("two three four five")], toks("two three four")),
             ([toks("p q")], toks("q p q p r s"))]
    for refs, hyp in cases:
        assert M.study_bleu1(refs, hyp) == pytest.approx(sentence_bleu(refs, hyp, weights=(1,)))


# ---------------------------------------------------------------- study ROUGE-L (beta 8)


def test_study_rouge_l_by_hand():
    # LCS(a b c d, a x c d e) = 3 (a c d): P = 3/5, R = 3/4,
    # F = 65 * 0.6 * 0.75 / (0.75 + 64 * 0.6) = 29.25 / 39.15
    assert M.study_rouge_l([toks("a b c d")], toks("a x c d e")) == pytest.approx(29.25 / 39.15)
    # two references, best F wins: ref 1 LCS 1 -> P 1/5, R 1/2, F = 6.5 / 13.3;
    # ref 2 LCS 5 -> P 1, R 5/6, F = 65 * 5/6 / (5/6 + 64) = 0.83548
    refs = [toks("a b"), toks("a x c d e f")]
    f2 = 65 * (5 / 6) / (5 / 6 + 64)
    assert M.study_rouge_l(refs, toks("a x c d e")) == pytest.approx(f2)
    assert M.study_rouge_l(refs, []) == 0.0
    assert M.study_rouge_l([toks("a")], toks("b")) == 0.0


# ---------------------------------------------------------------- study METEOR (nltk, exact only)


def test_study_meteor_by_hand():
    # identical 4 tokens: P = R = 1, one chunk: 1 - 0.5 * (1/4)^3 = 0.9921875
    assert M.study_meteor([toks("a b c d")], toks("a b c d")) == pytest.approx(0.9921875)
    # matches a, c, d: P = R = 3/4, fmean = PR / (0.9 P + 0.1 R) = 0.75,
    # chunks {a}, {c d} = 2: penalty 0.5 * (2/3)^3 = 4/27 -> 0.75 * (1 - 4/27)
    expected = 0.75 * (1 - 4 / 27)
    assert M.study_meteor([toks("a b c d")], toks("a x c d")) == pytest.approx(expected)
    # several references: the best one counts
    assert M.study_meteor([toks("q r"), toks("a b c d")], toks("a x c d")) == pytest.approx(expected)
    assert M.study_meteor([toks("a b")], []) == 0.0


def test_study_meteor_is_exact_only():
    # nltk's defaults would match "cats"~"cat" by stem and lowercase "Sat"; exact-only does not
    assert M.study_meteor([toks("cat sat")], toks("cats Sat")) == 0.0


def test_study_meteor_matches_nltk_on_plain_words():
    # words without shared Porter stems, lowercase: the defaults (lowercasing, Porter stemmer) and
    # exact-only agree; nltk's wordnet data is absent, so a no-synonym stand-in is passed
    cases = [([toks("red fox jumps over lazy dog")], toks("lazy fox over red dog")),
             ([toks("alpha beta gamma"), toks("delta alpha")], toks("alpha delta beta")),
             ([toks("kiwi plum")], toks("plum kiwi plum fig"))]
    for refs, hyp in cases:
        direct = meteor_score(refs, hyp, wordnet=M._NoSynonyms())
        assert M.study_meteor(refs, hyp) == pytest.approx(direct)


# ---------------------------------------------------------------- study_text_scores


def test_study_text_scores_means_and_edge_cases():
    refs = [[toks("a b c d")], [toks("e f"), []], [[]]]  # image 3: no usable reference
    hyps = [toks("a b c d"), [], toks("x")]
    with pytest.warns(UserWarning, match="1 image"):
        scores = M.study_text_scores(refs, hyps)
    # image 1 perfect (bleu 1, rouge 1, meteor 0.9921875), image 2 empty hyp -> 0
    assert scores == pytest.approx({"bleu1": 0.5, "rouge_l": 0.5, "meteor": 0.9921875 / 2,
                                    "n_images": 2})


def test_inputs_are_checked():
    with pytest.raises(TypeError):
        M.study_text_scores([[toks("a b")]], ["a b"])  # a string instead of a token list
    with pytest.raises(TypeError):
        M.study_text_scores([toks("a b")], [toks("a b")])  # refs not nested per reference
    with pytest.raises(ValueError):
        M.study_text_scores([[toks("a")]], [])
    empty = M.study_text_scores([], [])
    assert empty["n_images"] == 0 and math.isnan(empty["bleu1"])


# ---------------------------------------------------------------- COCO metrics (pycocoevalcap)


def test_coco_by_hand(jar):
    # BLEU, corpus level. Image 1: 3/4 unigrams, bigrams: "a b" of 3 -> 1/3.
    # Image 2 adds 1/1 unigram and 0/0 bigrams; lengths: hyp 4 + 1 = 5, refs 4 + 2 = 6.
    # BLEU-1 = 4/5 * exp(1 - 6/5); BLEU-2 = sqrt(4/5 * 1/3) * exp(1 - 6/5)
    refs = [[toks("a b c d")], [toks("e f")]]
    hyps = [toks("a b x d"), toks("e")]
    scores = M.coco_text_scores(refs, hyps, meteor=jar)
    bp = math.exp(1 - 6 / 5)
    assert scores["BLEU-1"] == pytest.approx(0.8 * bp, abs=1e-6)
    assert scores["BLEU-2"] == pytest.approx(math.sqrt(0.8 / 3) * bp, abs=1e-6)
    assert scores["BLEU-3"] == pytest.approx(0.0, abs=1e-4)  # pycocoevalcap's epsilon, not 0
    assert scores["n_images"] == 2


def test_coco_meteor_and_rouge_by_hand(jar):
    needs_java(jar)
    # METEOR 1.5 (en: alpha .85, beta .2, gamma .6), all surrogates content words:
    # hyp a x b vs ref a b: P = 2/3, R = 1, Fmean = PR / (.85 P + .15 R) = (2/3) / (.85*2/3 + .15),
    # 2 chunks over 2 matches: penalty .6 * 1^.2 = .6 -> .4 * Fmean
    scores = M.coco_text_scores([[toks("a b")]], [toks("a x b")], meteor=jar)
    assert scores["METEOR"] == pytest.approx(0.4 * (2 / 3) / (0.85 * 2 / 3 + 0.15), abs=1e-6)
    # ROUGE-L beta 1.2, max P and max R over references separately:
    # ref 1 LCS 1: P 1/5, R 1/2; ref 2 LCS 5: P 1, R 5/6 -> F = 2.44 * 5/6 / (5/6 + 1.44)
    scores = M.coco_text_scores([[toks("a b"), toks("a x c d e f")]], [toks("a x c d e")], meteor=jar)
    assert scores["ROUGE-L"] == pytest.approx(2.44 * (5 / 6) / (5 / 6 + 1.44))


def test_cider_d_by_hand_length_penalty(jar):
    # two images, so a reference n-gram of one image has idf log 2 - log 1 = L2; an n-gram in
    # no reference gets df 1 too (pycocoevalcap's max(1, df)), also idf L2.
    # A: hyp a b c vs ref a b: unigrams (a b c).(a b) = 2 L2^2 / (sqrt3 L2 * sqrt2 L2) = 2/sqrt6,
    #    bigrams (ab bc).(ab) = 1/sqrt2, 3-grams vs none = 0; length difference 1 ->
    #    Gaussian penalty exp(-1 / 72); score 10 * (2/sqrt6 + 1/sqrt2) / 4 * exp(-1/72)
    # B: hyp c e vs ref c d: unigrams 1/2, bigrams 0 -> 10 * 0.5 / 4 = 1.25
    a = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    scores = M.coco_text_scores([[toks("a b")], [toks("c d")]], [toks("a b c"), toks("c e")],
                                meteor=jar)
    assert scores["CIDEr-D"] == pytest.approx((a + 1.25) / 2)


def test_cider_d_by_hand_clipping(jar):
    # A: hyp a a vs ref a b: tf(a) = 2 -> 2 L2, clipped to the ref's L2 in the numerator:
    #    L2 * L2 / (2 L2 * sqrt2 L2) = 1 / (2 sqrt2) (0.707 without clipping); bigrams 0
    #    -> 10 * 0.35355 / 4.  B identical two tokens: unigram 1, bigram 1 -> 10 * 2 / 4 = 5
    a = 10 * (1 / (2 * math.sqrt(2))) / 4
    scores = M.coco_text_scores([[toks("a b")], [toks("c d")]], [toks("a a"), toks("c d")],
                                meteor=jar)
    assert scores["CIDEr-D"] == pytest.approx((a + 5) / 2)
    # one image: every idf is log 1 - log 1 = 0, so CIDEr-D is 0 even for a perfect caption
    one = M.coco_text_scores([[toks("a b")]], [toks("a b")], meteor=jar)
    assert one["CIDEr-D"] == 0.0


def test_coco_empty_hypothesis_and_reference(jar):
    needs_java(jar)
    # image 1 perfect; image 2 empty hyp; image 2's extra empty reference is ignored;
    # image 3 has no usable reference and is left out.
    refs = [[toks("a b c d")], [toks("e f"), []], []]
    hyps = [toks("a b c d"), [], toks("z")]
    with pytest.warns(UserWarning, match="1 image"):
        scores = M.coco_text_scores(refs, hyps, meteor=jar)
    assert scores["n_images"] == 2
    # BLEU-1: 4/4 matched, hyp length 4 vs ref length 4 + 2: BP = exp(1 - 6/4)
    assert scores["BLEU-1"] == pytest.approx(math.exp(-0.5), abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(0.5)  # (1 + 0) / 2
    # CIDEr-D: image 1 n = 1..4 all cosine 1, no length gap -> 10; image 2 -> 0
    assert scores["CIDEr-D"] == pytest.approx(5.0)
    # METEOR over summed statistics: m = 4, hyp 4, refs 4 + 2: P 1, R 2/3,
    # Fmean = (2/3) / (.85 + .15 * 2/3). The jar adds no chunk for a perfectly matched segment,
    # so the corpus has 0 chunks and no fragmentation penalty: METEOR = Fmean.
    fmean = (2 / 3) / (0.85 + 0.15 * 2 / 3)
    assert scores["METEOR"] == pytest.approx(fmean, abs=1e-6)
    # alone, the same 4 matches against a 6-token reference are one chunk of a non-perfect
    # segment: penalty .6 * (1/4)^.2
    alone = M.coco_text_scores([[toks("a b c d e f")]], [toks("a b c d")], meteor=jar)
    assert alone["METEOR"] == pytest.approx(fmean * (1 - 0.6 * 0.25**0.2), abs=1e-6)


def _coco_direct(gts, res, meteor):
    """pycocoevalcap called directly on already space-joined ASCII strings."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{n + 1}": bleu[n] for n in range(4)}
    out["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr-D"] = Cider().compute_score(gts, res)[0]
    out["METEOR"] = meteor.compute_score(gts, res)[0]
    return out


def test_coco_matches_pycocoevalcap_on_ascii(jar):
    needs_java(jar)
    # invented words: no English stems, synonyms, paraphrases or function words for METEOR
    refs = [[toks("zorp blix quam vendo"), toks("zorp quam vendo trell")],
            [toks("mivo dask"), toks("dask mivo prub")],
            [toks("sulk tarn welo")],
            [toks("gomp yiff zorp ulba krin")]]
    hyps = [toks("zorp quam vendo"), toks("dask mivo prub krin"), toks("tarn sulk"),
            toks("gomp zorp ulba krin yiff gomp")]
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    direct = _coco_direct(gts, res, jar)
    ours = M.coco_text_scores(refs, hyps, meteor=jar)
    for key, value in direct.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_surrogates_switch_off_english_meteor(jar):
    needs_java(jar)
    # the raw jar matches "cats" to "cat" by stem; on surrogates that cannot happen
    gts, res = {0: ["zorp cat vendo"]}, {0: ["zorp cats vendo"]}
    raw = jar.compute_score(gts, res)[0]
    ours = M.coco_text_scores([[toks("zorp cat vendo")]], [toks("zorp cats vendo")], meteor=jar)
    assert ours["METEOR"] < raw


# ---------------------------------------------------------------- Korean tokens and text_scores

KO_REFS = [[["바다/Noun", "가/Josa", "예쁘다/Adjective"], ["푸른/Adjective", "바다/Noun"]],
           [["오늘/Noun", "날씨/Noun", "|||", "좋다/Adjective", "!/Punctuation"]],
           [["카페/Noun", "에서/Josa", "커피/Noun"]]]
KO_HYPS = [["바다/Noun", "예쁘다/Adjective", "바다/Noun"],
           ["오늘/Noun", "날씨/Noun", "좋다/Adjective"],
           ["커피/Noun", "카페/Noun", "에서/Josa", "커피/Noun", "맛있다/Adjective"]]


def _rename(refs, hyps):
    """The same sentences with every token renamed to a plain ASCII word."""
    names = {}

    def rn(seq):
        return [names.setdefault(t, f"w{len(names)}x") for t in seq]

    return [[rn(r) for r in rs] for rs in refs], [rn(h) for h in hyps]


def test_korean_tokens_score_like_their_surrogates(jar):
    needs_java(jar)
    ko = M.text_scores(KO_REFS, KO_HYPS, meteor=jar)
    ascii_refs, ascii_hyps = _rename(KO_REFS, KO_HYPS)
    plain = M.text_scores(ascii_refs, ascii_hyps, meteor=jar)
    assert ko == pytest.approx(plain)
    assert set(ko) == {"study_bleu1", "study_rouge_l", "study_meteor", "BLEU-1", "BLEU-2",
                       "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "n_images"}
    assert all(0.0 < ko[k] for k in ko)


def test_surrogate_strings_are_consistent():
    gts, res = M.surrogate_strings([[["바다/Noun", "a b"]], [["a b"]]], [["a b", "바다/Noun"], []])
    assert gts == {0: ["t0 t1"], 1: ["t1"]}
    assert res == {0: ["t1 t0"], 1: [""]}


def test_missing_java_gives_nan_meteor(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.warns(RuntimeWarning, match="java"):
        scores = M.coco_text_scores([[toks("a b")], [toks("c")]], [toks("a b"), toks("c")])
    assert math.isnan(scores["METEOR"])
    assert scores["BLEU-1"] == pytest.approx(1.0) and scores["ROUGE-L"] == pytest.approx(1.0)


def test_the_shared_jar_starts_once_and_restarts_when_dead(jar):
    """Scoring without a scorer of its own uses the process's jar: one JVM for every call, a new one if it died,
    stopped by close_shared_meteor (and at exit)."""
    needs_java(jar)
    assert M.shared_meteor() is jar and jar.meteor_p.poll() is None
    first = M.coco_text_scores([[toks("a b c")]], [toks("a b")])
    assert M.coco_text_scores([[toks("a b c")]], [toks("a b")]) == first and 0 < first["METEOR"] < 1
    assert M.shared_meteor() is jar
    jar.meteor_p.kill()
    jar.meteor_p.wait()
    fresh = M.shared_meteor()
    assert fresh is not jar and fresh.meteor_p.poll() is None
    assert M.coco_text_scores([[toks("a b c")]], [toks("a b")]) == first
    M.close_shared_meteor()
    assert fresh.meteor_p.poll() is not None and fresh.meteor_p.stdout.closed
    with M.meteor_scorer() as own:  # a scorer of one's own is still its own
        assert own is not None and own is not M.shared_meteor()


def test_dead_jar_gives_nan_meteor_and_closes(jar):
    needs_java(jar)
    meteor = Meteor()
    meteor.meteor_p.kill()
    meteor.meteor_p.wait()
    with pytest.warns(RuntimeWarning, match="METEOR jar failed"):
        scores = M.coco_text_scores([[toks("a b")]], [toks("a b")], meteor=meteor)
    assert math.isnan(scores["METEOR"]) and scores["BLEU-1"] == pytest.approx(1.0)
    assert not meteor.lock.locked()
    M._close_meteor(meteor)
    M._close_meteor(meteor)  # twice is harmless
    assert meteor.meteor_p.stdout.closed


# ---------------------------------------------------------------- hashtags


def test_hashtag_scores_by_hand():
    true = [["a", "b", "c"], ["d"], []]
    pred = [["a", "x", "a", "b"], [], ["z"]]
    s = M.hashtag_scores(true, pred, ks=(1, 3, 5))
    # distinct predictions: [a x b], [], [z]; hits 2 + 0 + 0
    # micro: P = 2 / (3 + 0 + 1), R = 2 / (3 + 1 + 0), F1 = 0.5
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # per image F1: 2/3 (P = R = 2/3), 0 (nothing predicted), 0 (nothing true) -> 2/9
    assert s["macro_f1"] == pytest.approx(2 / 9)
    # @1: [a] hit; [] miss; [z] miss -> P (1 + 0 + 0)/3, R over images with tags (1/3 + 0)/2
    assert s["precision@1"] == pytest.approx(1 / 3) and s["recall@1"] == pytest.approx(1 / 6)
    # @3: [a x b] 2 hits -> P (2/3)/3, R (2/3 + 0)/2; @5: P (2/5)/3, R 1/3
    assert s["precision@3"] == pytest.approx(2 / 9) and s["recall@3"] == pytest.approx(1 / 3)
    assert s["precision@5"] == pytest.approx(2 / 15) and s["recall@5"] == pytest.approx(1 / 3)
    assert s["n_images"] == 3 and s["n_with_true"] == 2


def test_hashtag_repeats_and_empty_cases():
    # a repeated prediction counts once: P = 1/1, R = 1/2, F1 = 2/3
    s = M.hashtag_scores([["a", "b"]], [["a", "a", "a"]], ks=(2,))
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    # @2 takes the first 2 distinct predictions: [a] -> P 1/2, R 1/2
    assert s["precision@2"] == pytest.approx(0.5) and s["recall@2"] == pytest.approx(0.5)
    # nothing true, nothing predicted: micro 0/0 -> 0, macro F1 1, recall@k undefined
    s = M.hashtag_scores([[]], [[]], ks=(1,))
    assert (s["precision"], s["recall"], s["f1"], s["macro_f1"]) == (0.0, 0.0, 0.0, 1.0)
    assert s["precision@1"] == 0.0 and math.isnan(s["recall@1"])
    with pytest.raises(TypeError):
        M.hashtag_scores([["a"]], ["a"])
    with pytest.raises(ValueError):
        M.hashtag_scores([["a"]], [])


# ---------------------------------------------------------------- baselines


def test_most_frequent_hashtags():
    posts = [["a", "b"], ["b", "b", "c"], ["c", "b"], ["a"]]
    # posts containing: b 3, a 2, c 2 (b twice in one post counts once); tie a/c alphabetical
    assert M.most_frequent_hashtags(posts, 2) == ["b", "a"]
    assert M.most_frequent_hashtags(posts, 10) == ["b", "a", "c"]
    assert M.most_frequent_hashtags(list(reversed(posts)), 3) == ["b", "a", "c"]


def test_nearest_neighbours_by_hand():
    train = np.array([[1.0, 0.0], [10.0, 10.0], [0.0, 1.0]])
    query = np.array([[2.0, 2.1]])
    # cosine: [10, 10] points almost the same way; euclidean: |(2, 1.1)|^2 = 5.21 to [0, 1]
    # beats 5.41 to [1, 0]
    assert M.nearest_neighbours(train, query).tolist() == [1]
    assert M.nearest_neighbours(train, query, metric="euclidean").tolist() == [2]
    with pytest.raises(ValueError):
        M.nearest_neighbours(train, query, metric="manhattan")


def test_nearest_k_matches_a_full_sort_across_blocks():
    rng = np.random.default_rng(1)
    train, query = rng.normal(size=(40, 6)), rng.normal(size=(17, 6))
    train[33] = train[5]  # equal scores across blocks: the lower index first
    query[2] = train[5] * 2
    for metric in ("cosine", "euclidean"):
        if metric == "cosine":
            score = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
                train / np.linalg.norm(train, axis=1, keepdims=True)).T
        else:
            score = -((query[:, None, :] - train[None, :, :]) ** 2).sum(-1)
        want = [sorted(range(len(train)), key=lambda j: (-round(row[j], 9), j))[:6] for row in score]
        got = M.nearest_k(train, query, 6, metric=metric, chunk=7)
        assert got.shape == (17, 6) and got.dtype == np.int64
        assert got.tolist() == want
        assert got[2, :2].tolist() == [5, 33]
        assert M.nearest_neighbours(train, query, metric=metric, chunk=7).tolist() == got[:, 0].tolist()
    assert M.nearest_k(train[:3], query, 10).shape == (17, 3)  # k capped at the training size
    with pytest.raises(ValueError):
        M.nearest_k(train, query, 0)


def test_nearest_neighbours_chunked_matches_brute_force():
    rng = np.random.default_rng(0)
    train, query = rng.normal(size=(50, 8)), rng.normal(size=(23, 8))
    train[37] = train[4]  # a tie across blocks goes to the lower index
    query[0] = train[4] * 3
    cos = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        train / np.linalg.norm(train, axis=1, keepdims=True)).T
    dist = ((query[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    got_cos = M.nearest_neighbours(torch.tensor(train), torch.tensor(query), chunk=7)
    got_l2 = M.nearest_neighbours(train.astype(np.float32), query.astype(np.float32),
                                  metric="euclidean", chunk=7)
    assert got_cos.dtype == np.int64 and got_cos.shape == (23,)
    assert got_cos.tolist() == cos.argmax(1).tolist()
    assert got_l2.tolist() == dist.argmin(1).tolist()
    assert got_cos[0] == 4


def test_random_texts_deterministic():
    items = [f"text {i}" for i in range(20)]
    first = M.random_texts(items, 50, seed=3)
    assert first == M.random_texts(items, 50, seed=3)
    assert first != M.random_texts(items, 50, seed=4)
    assert len(first) == 50 and set(first) <= set(items)
    with pytest.raises(ValueError):
        M.random_texts([], 1, seed=0)


def test_fast_consensus_equals_the_plain_one():
    """CiderD.consensus (fused.cider_similarities: one [m, m] array) against consensus_plain (score, pair by pair):
    the same choice and mean, each similarity equal to score() against that candidate alone; a prefix of a larger
    set's similarities gives that prefix's consensus."""
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    corpus = [[list(rng.choice(words, size=rng.integers(3, 9)))] for _ in range(30)]
    cider = M.CiderD(corpus)
    for trial in range(40):
        m = int(rng.integers(2, 25))
        cands = [list(rng.choice(words, size=rng.integers(0 if trial % 7 == 0 else 1, 12))) for _ in range(m)]
        if trial % 5 == 0:
            cands[-1] = list(cands[0])  # a duplicate
        cands.append(["unseen", "words", "only"])
        sims = cider.similarities(cands)
        assert sims.shape == (m + 1, m + 1)
        for i in range(0, m + 1, 3):
            for j in range(m + 1):
                assert sims[i, j] == pytest.approx(cider.score(cands[i], [cands[j]]), abs=1e-12)
        got, want = cider.consensus(cands), cider.consensus_plain(cands)
        assert got[1] == pytest.approx(want[1], abs=1e-12)
        assert cands[got[0]] == cands[want[0]]  # the same text (a duplicate of it may sit at another index)
        k = max(2, m // 2)
        assert cider.consensus(cands[:k], sims) == pytest.approx(cider.consensus(cands[:k]), abs=1e-12)
        # the first k as the only candidates, the rest as evidence (references that are never chosen)
        assert np.allclose(cider.similarities(cands, rows=k), sims[:k], atol=1e-12, rtol=0)
        got, want = cider.consensus(cands[:k], evidence=cands[k:]), cider.consensus_plain(cands[:k], cands[k:])
        assert got[0] < k and got[1] == pytest.approx(want[1], abs=1e-12) and cands[got[0]] == cands[want[0]]
    assert cider.consensus([["a"]]) == (0, 0.0)
    assert cider.consensus([["a"]], evidence=[["a"]]) == cider.consensus_plain([["a"]], [["a"]]) != (0, 0.0)
