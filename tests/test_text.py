"""Tests of capkit.text on real Korean Instagram-style sentences."""

import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import unicodedata

import pytest
import torch

from capkit import detok as DT
from capkit import text as T
from capkit import vocab_report as R
from capkit import word_vectors as W

# (source, readable text expected back from tokenize -> detokenize; None: the source itself).
# Expected texts differ from the source only where the source has a spacing error or Okt's normalisation
# shortens it (ㅋㅋㅋㅋㅋ -> ㅋㅋㅋ, 욬 -> 요).
SENTENCES = [
    ("오늘 해운대 바다 너무 예뻤어요ㅋㅋ #부산 #해운대", None),
    ("친구랑 경복궁에서 한복 입고 사진 찍었어요😍😍", None),
    ("날씨가좋아서 한강에서 치맥했어요ㅎㅎ", "날씨가 좋아서 한강에서 치맥했어요ㅎㅎ"),
    ("Coffee 한잔의 여유 ☕ 카페 투어 3곳째!", None),
    ("2019년 5월 제주도 여행 day1 🌊", None),
    ("진짜 맛있다 ㅠㅠ 또 가고싶당", None),
    ("드디어 도착!!! 너무 설렌다~~", None),
    ("I love Seoul 서울숲 산책 중이에요 :)", None),
    ("야경 미쳤다... 남산타워 최고", None),
    ("맛집 인정합니다 👍👍 #맛스타그램 #먹스타그램", None),
    ("셀카 한 장 찍어봤어요 ㅎㅎ 오랜만에 화장했당", None),
    ("이 카페 분위기 완전 좋네요. 커피도 12,000원이라 좀 비싸지만 괜찮아요!", None),
    ("전주한옥마을 다녀왔어요 길거리 음식 다 맛있음", None),
    ("벚꽃이 활짝 피었네요🌸 봄이다 봄", None),
    ("오늘의 OOTD 👗 #데일리룩 #ootd", None),
    ("부산 여행 2일차, 감천문화마을 왔어요", None),
    ("비 오는 날엔 역시 파전에 막걸리죠 ㅋㅋㅋ", None),
    ("아침 7시에 일어나서 등산했더니 다리가 너무 아파요ㅠㅠ", None),
    ("우리 강아지 생일 축하해🎂🐶", None),
    ("여기 뷰 맛집이네욬ㅋㅋ 또 올게요", "여기 뷰 맛집이네요ㅋㅋ 또 올게요"),
    ("주말에 가족이랑 캠핑 ⛺ 고기 굽는 중", None),
    ("이거 진짜 꿀맛이에요 강추!! #제주맛집", None),
    ("퇴근하고 헬스장 가는 길 💪", None),
    ("생각보다 사람이 많아서 놀랐다", None),
    ("첫 해외여행 in Tokyo ✈️ 설레는 마음", None),
    ("광안리 불꽃축제 보러 왔는데 사람 진짜 많다ㅋㅋㅋㅋㅋ", "광안리 불꽃축제 보러 왔는데 사람 진짜 많다ㅋㅋㅋ"),
    ("오늘은 여기까지!! 다들 좋은 밤 되세요 ^^", None),
    ("눈이와서 너무좋아요", "눈이 와서 너무 좋아요"),
    ("카페에서 공부하는 중... 시험 3일 남음", None),
    ("남이섬 단풍 구경 🍁 가을 느낌 물씬", None),
    ("엄마가 해준 김치찌개가 최고야", None),
    ("BTS 콘서트 다녀왔어요 ㅠㅠ 감동 그 자체", None),
    ("2시간 기다려서 먹은 빵 #성심당 #대전", None),
    ("바다보면서 커피 한잔", "바다 보면서 커피 한잔"),
    ("#부산#해운대 오늘 날씨 최고", "#부산 #해운대 오늘 날씨 최고"),
    ("인생샷 건졌다 📸 사진은 @photo_kim 님이 찍어주셨어요", None),
]

SPACING_ERRORS = {2, 27, 33, 34}  # sources whose expected text has other spaces

# Sentences the spacing rules alone must get exactly right: particles and endings, 하다-verbs, a spacing
# error, punctuation, numbers with counters, emoji after a predicate, ㅋㅋ, hashtags side by side.
RULES_MUST_PASS = [0, 1, 2, 3, 6, 11, 18, 21, 22, 27, 28, 34]

# Other texts (not the test sentences) a Detokenizer learns from: they hold compounds that Okt cuts apart.
FIT_TEXTS = [
    "오랜만에 친구들이랑 광안리 다녀왔어요",
    "광안리 바다 보면서 인생샷 남기기",
    "오랜만에 카페 투어 인생샷 건짐",
    "다들 주말 잘 보내세요",
    "다들 좋은 하루 되세요",
    "전주한옥마을 한복 체험 너무 재밌었다",
    "전주한옥마을 야경도 예뻐요",
    "감천문화마을 골목 산책",
    "불꽃축제 명당 자리 잡았어요",
]


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def round_trip_scores(outputs, expected):
    exact = sum(o == e for o, e in zip(outputs, expected)) / len(expected)
    cer = sum(edit_distance(o, e) for o, e in zip(outputs, expected)) / sum(len(e) for e in expected)
    return exact, cer


@pytest.fixture(scope="module")
def okt():
    try:
        return T.get_tokenizer("okt")
    except T.TokenizerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def okt_tokens(okt):
    return [okt(src) for src, _ in SENTENCES]


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


def test_okt_gives_word_pos_tokens(okt, okt_tokens):
    for tokens in okt_tokens:
        assert tokens and all(T.split_token(t)[1] in T.OKT_TAGS for t in tokens), tokens
    assert okt_tokens[0][:3] == ["오늘/Noun", "해운대/Noun", "바다/Noun"]
    assert "ㅋㅋ/KoreanParticle" in okt_tokens[0]
    assert "😍😍/Foreign" in okt_tokens[1]
    assert "Coffee/Alpha" in okt_tokens[3] and "3/Number" in okt_tokens[3]
    assert "12,000원/Number" in okt_tokens[11]
    assert "ㅋㅋㅋ/KoreanParticle" in okt_tokens[25]  # normalised from ㅋㅋㅋㅋㅋ
    assert okt.name == "okt" and "konlpy" in okt.version


def test_okt_is_the_study_call_on_text_without_hashtags(okt):
    from konlpy.tag import Okt

    study = Okt()
    for src, _ in SENTENCES:
        if "#" not in src:
            assert okt(src) == study.pos(src, norm=True, join=True)


def test_hashtags_inside_text_stay_whole(okt):
    tokens = okt("#부산#해운대 #2019 여행 #먹스타그램ㅋㅋ 최고")
    for tag in ["#부산/Hashtag", "#해운대/Hashtag", "#2019/Hashtag", "#먹스타그램ㅋㅋ/Hashtag"]:
        assert tag in tokens
    assert "#/Punctuation" not in tokens  # Okt alone would give '#' + '2019'
    assert T.get_tokenizer("whitespace")("#부산 #해운대 여행") == ["#부산", "#해운대", "여행"]


def test_okt_morph_is_the_surface_of_okt(okt, okt_tokens):
    morph = T.get_tokenizer("okt_morph")
    for (src, _), tokens in zip(SENTENCES, okt_tokens):
        assert morph(src) == [t.rsplit("/", 1)[0] for t in tokens]


def test_whitespace_tokenizer_normalises_lightly():
    ws = T.get_tokenizer("whitespace")
    nfd = unicodedata.normalize("NFD", "바다 여행\t 최고 ")
    assert ws(nfd) == ["바다", "여행", "최고"]
    assert ws("") == [] and ws("   ") == []
    with pytest.raises(ValueError):
        T.get_tokenizer("mecab")


def test_okt_without_java_says_what_to_install(tmp_path):
    """A fresh Python where jpype's JVM search finds nothing: no JAVA_HOME, nothing on PATH, and jpype's fixed
    places (/usr/bin/java, /usr/lib/jvm, ...) pointed at an empty folder."""
    script = textwrap.dedent(f"""
        import jpype, jpype._jvmfinder as finder
        for cls in (finder.LinuxJVMFinder, finder.DarwinJVMFinder):
            cls._java = {str(tmp_path / "java")!r}
            cls._locations = ({str(tmp_path)!r},)
        from capkit import text
        try:
            text.get_tokenizer("okt")
        except text.TokenizerUnavailable as err:
            print("UNAVAILABLE:", type(err.__cause__).__name__, ":", err)
        else:
            print("NO ERROR")
        print("JVM STARTED:", jpype.isJVMStarted())
        print("WHITESPACE:", text.get_tokenizer("whitespace")("바다 여행 최고"))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "JDK_HOME", "JRE_HOME")}
    env["PATH"] = os.path.dirname(sys.executable)
    assert subprocess.run(["/bin/sh", "-c", "command -v java"], env=env, capture_output=True).returncode != 0
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "UNAVAILABLE: JVMNotFoundException" in out.stdout
    assert "default-jdk" in out.stdout and "openjdk" in out.stdout
    assert "JVM STARTED: False" in out.stdout
    assert "WHITESPACE: ['바다', '여행', '최고']" in out.stdout


# Kiwi (kiwipiepy, no Java) on Instagram-style Korean: (source, readable text the spacing rules give back).
# Spacing errors are corrected, emoji, ㅋㅋ, English words and hashtags inside the text come back as written.
KIWI_SENTENCES = [
    ("오늘 해운대바다 너무예뻤어요ㅋㅋ 😍 #부산 #바다", "오늘 해운대 바다 너무 예뻤어요ㅋㅋ 😍 #부산 #바다"),
    ("친구랑카페왔는데 넘좋다ㅋㅋㅋ I love Seoul!! 👍🏻", "친구랑 카페 왔는데 넘 좋다ㅋㅋㅋ I love Seoul!! 👍🏻"),
    ("#부산#해운대 오늘 날씨 최고", "#부산 #해운대 오늘 날씨 최고"),
    ("날씨가 추워서 공부했어요 ㅠㅠ", None),
    ("눈이와서 너무좋아요", "눈이 와서 너무 좋아요"),
    ("이 카페 분위기 완전 좋네요. 커피도 12,000원이라 좀 비싸지만 괜찮아요!", None),
    ("엄마가 해준 김치찌개가 최고야", None),
    ("우리 강아지 생일 축하해🎂🐶", None),
    ("Coffee 한잔의 여유 ☕ 오늘은#카페 투어 #먹스타그램", "Coffee 한 잔의 여유 ☕ 오늘은 #카페 투어 #먹스타그램"),
]


@pytest.fixture(scope="module")
def kiwi():
    try:
        return T.get_tokenizer("kiwi")
    except T.TokenizerUnavailable as err:
        pytest.skip(str(err))


def test_kiwi_gives_surface_tag_tokens(kiwi):
    tokens = kiwi(KIWI_SENTENCES[0][0])
    assert tokens == ["오늘/MAG", "해운대/NNP", "바다/NNG", "너무/MAG", "예뻤어요/VA", "ㅋㅋ/SW", "😍/W_EMOJI",
                      "#부산/Hashtag", "#바다/Hashtag"]  # a predicate keeps its endings as written (예쁘+었+어요)
    assert "Seoul/SL" in kiwi(KIWI_SENTENCES[1][0]) and "👍🏻/W_EMOJI" in kiwi(KIWI_SENTENCES[1][0])
    assert kiwi("날씨가 추워서 공부했어요")[-2:] == ["공부/NNG", "했어요/XSV"]
    assert all(T.split_token(t)[1] in T.KIWI_TAGS or T.split_token(t)[1] == "Hashtag"
               for src, _ in KIWI_SENTENCES for t in kiwi(src))
    assert kiwi.name == "kiwi" and "kiwipiepy-" in kiwi.version and "+model-" in kiwi.version
    assert T.tokenizer_version("kiwi") == kiwi.version != T.tokenizer_version("okt")


def test_kiwi_keeps_hashtags_whole(kiwi):
    tokens = kiwi("오늘은#카페 투어 #부산#해운대 #2019 #먹스타그램ㅋㅋ 최고")
    for tag in ["#카페/Hashtag", "#부산/Hashtag", "#해운대/Hashtag", "#2019/Hashtag", "#먹스타그램ㅋㅋ/Hashtag"]:
        assert tag in tokens
    assert not any(t.startswith("#/") for t in tokens)


def test_kiwi_loses_no_character(kiwi):
    """The surfaces are the text's own characters: joined, they are the text without spaces (no normalisation,
    unlike Okt's ㅋㅋㅋㅋㅋ -> ㅋㅋㅋ)."""
    for src in [s for s, _ in SENTENCES] + [s for s, _ in KIWI_SENTENCES]:
        surfaces = [T.split_token(t)[0] for t in kiwi(src)]
        assert "".join(surfaces) == "".join(src.split()), src
    assert "ㅋㅋㅋㅋㅋ/SW" in kiwi("사람 진짜 많다ㅋㅋㅋㅋㅋ")


def test_kiwi_round_trip_to_readable_text(kiwi):
    for src, expected in KIWI_SENTENCES:
        assert DT.detokenize(kiwi(src)) == (expected or src), src
    # a fitted Detokenizer learns the compounds Kiwi cuts apart (불꽃 + 축제) from training texts
    src = "광안리 불꽃축제 보러 왔는데 사람 진짜 많다ㅋㅋㅋ"
    assert DT.detokenize(kiwi(src)) != src
    det = DT.Detokenizer.fit(FIT_TEXTS, [kiwi(t) for t in FIT_TEXTS], min_count=1)
    assert det(kiwi(src)) == src


def test_kiwi_through_the_token_cache(kiwi, tmp_path):
    texts = [src for src, _ in KIWI_SENTENCES]
    cold = T.tokenize_all(texts, "kiwi", cache_dir=tmp_path)
    warm = T.tokenize_all(texts, "kiwi", cache_dir=tmp_path)
    assert warm == cold and warm.stats.hits == len(texts) and warm.stats.misses == 0
    assert cold.stats.tokenizer == f"kiwi@{kiwi.version}"
    assert T.tokenize_all(texts, "whitespace", cache_dir=tmp_path).stats.hits == 0  # entries never mix


def test_compare_tokenizers_side_by_side(kiwi):
    table = R.compare_tokenizers([src for src, _ in KIWI_SENTENCES[:3]], ("kiwi", "whitespace"))
    assert list(table.columns) == ["text", "kiwi tokens", "kiwi n", "kiwi readable", "whitespace tokens",
                                   "whitespace n", "whitespace readable"]
    assert table["kiwi readable"].tolist() == [exp for _, exp in KIWI_SENTENCES[:3]]
    assert table["whitespace readable"].tolist() == table["text"].tolist()


# ---------------------------------------------------------------------------------------------------------------
# Detokenization


def test_round_trip_with_rules(okt_tokens):
    outputs = [DT.detokenize(tokens) for tokens in okt_tokens]
    expected = [exp or src for src, exp in SENTENCES]
    for i in RULES_MUST_PASS:
        assert outputs[i] == expected[i]
    exact, cer = round_trip_scores(outputs, expected)
    print(f"\nrules round trip on {len(expected)} sentences: exact {exact:.2f}, CER {cer:.4f}")
    assert exact >= 0.65 and cer <= 0.03


def test_round_trip_with_a_fitted_detokenizer(okt, okt_tokens):
    expected = [exp or src for src, exp in SENTENCES]
    rules = [DT.detokenize(tokens) for tokens in okt_tokens]
    # learned from other texts: compounds that Okt cuts (광안 + 리, 오랜 + 만, 다 + 들) come back whole
    det = DT.Detokenizer.fit(FIT_TEXTS, [okt(t) for t in FIT_TEXTS], min_count=1)
    learned = [det(tokens) for tokens in okt_tokens]
    for i, piece in [(10, "오랜만에"), (12, "전주한옥마을"), (15, "감천문화마을"), (25, "광안리 불꽃축제"), (26, " 다들 "),
                     (35, "인생샷")]:
        assert piece in expected[i] and piece in learned[i] and piece not in rules[i], (rules[i], learned[i])
    assert round_trip_scores(learned, expected)[0] > round_trip_scores(rules, expected)[0]
    # learned from the sentences themselves, it gives back each one's own spacing (spacing errors included)
    own = DT.Detokenizer.fit([src for src, _ in SENTENCES], okt_tokens, min_count=1)
    for i, tokens in enumerate(okt_tokens):
        if i not in SPACING_ERRORS:
            assert own(tokens) == expected[i]


def test_detokenizer_save_load(tmp_path, okt, okt_tokens):
    det = DT.Detokenizer.fit(FIT_TEXTS, [okt(t) for t in FIT_TEXTS])
    det.save(tmp_path / "detok.json")
    again = DT.Detokenizer.load(tmp_path / "detok.json")
    assert again.to_dict() == det.to_dict()
    assert [again(t) for t in okt_tokens] == [det(t) for t in okt_tokens]


def test_glue_flags_follow_the_original_spacing():
    text = "이것도 되나욬ㅋㅋㅋㅋㅋ 완전 좋아요"
    surfaces = ["이", "것", "도", "되나요", "ㅋㅋㅋ", "완전", "좋아요"]
    assert DT.glue_flags(text, surfaces) == [None, True, True, None, True, False, False]


def test_detokenize_specials_surface_forms_and_whitespace():
    tokens = ["<start>", "바다/Noun", "가/Josa", "<unk>", "예뻐요/Adjective", "ㅋㅋ/KoreanParticle", "<end>", "<pad>"]
    assert DT.detokenize(tokens) == "바다가 <unk> 예뻐요ㅋㅋ"
    assert DT.detokenize(["친구", "랑", "카페", "왔어요", "!", "☕"]) == "친구랑 카페 왔어요! ☕"
    assert DT.detokenize(["a", "dog", "."], tokenizer="whitespace") == "a dog ."
    assert DT.detokenize(['"/Punctuation', "최고/Noun", '"/Punctuation', "(/Punctuation", "서울/Noun",
                         ")/Punctuation"]) == '"최고" (서울)'
    assert DT.detokenize([]) == ""


# ---------------------------------------------------------------------------------------------------------------
# Token cache


class CountingTokenizer(T.Tokenizer):
    def __init__(self, version="1"):
        super().__init__("counting", lambda s: s.split(), version)
        self.calls = 0

    def __call__(self, text):
        self.calls += 1
        return super().__call__(text)


def test_cache_hits_do_not_call_the_tokenizer(tmp_path):
    texts = [src for src, _ in SENTENCES] + [SENTENCES[0][0], SENTENCES[1][0]]  # two repeats
    tok = CountingTokenizer()
    cold = T.tokenize_all(texts, tok, cache_dir=tmp_path)
    assert tok.calls == len(SENTENCES)  # each distinct text once
    assert (cold.stats.hits, cold.stats.misses, cold.stats.texts) == (0, len(SENTENCES), len(texts))
    warm = T.tokenize_all(texts, tok, cache_dir=tmp_path)
    assert tok.calls == len(SENTENCES)  # nothing tokenized again
    assert (warm.stats.hits, warm.stats.misses) == (len(SENTENCES), 0)
    assert warm == cold == [t.split() for t in texts]
    assert warm.stats.tokens == cold.stats.tokens > 0 and warm.stats.tokens_per_second > 0
    assert T.tokenize_all(texts, CountingTokenizer(version="2"), cache_dir=tmp_path).stats.hits == 0
    assert T.tokenize_all(texts, tok, progress=True).stats.misses == len(SENTENCES)  # no cache_dir: no cache


def test_okt_cache_round_trip(tmp_path, okt, okt_tokens):
    texts = [src for src, _ in SENTENCES]
    cold = T.tokenize_all(texts, okt, cache_dir=tmp_path)
    warm = T.tokenize_all(texts, "okt", cache_dir=tmp_path)
    assert cold == warm == okt_tokens
    assert warm.stats.hits == len(texts) and warm.stats.as_dict()["tokenizer"].startswith("okt@konlpy")


def test_a_warm_cache_reads_back_without_java(tmp_path, monkeypatch):
    """By name, `okt` is only started for texts missing from the cache (a GPU machine may have no Java)."""
    texts = [src for src, _ in SENTENCES]
    fake = T.Tokenizer("okt", lambda s: [w + "/Noun" for w in s.split()], T.tokenizer_version("okt"))
    T.tokenize_all(texts, fake, cache_dir=tmp_path)

    def no_java():
        raise T.TokenizerUnavailable("no Java here")

    monkeypatch.setattr(T, "_OKT", None)
    monkeypatch.setattr(T, "_find_jvm", no_java)
    warm = T.tokenize_all(texts, "okt", cache_dir=tmp_path)
    assert warm.stats.hits == len(texts) and warm[0] == [w + "/Noun" for w in texts[0].split()]
    with pytest.raises(T.TokenizerUnavailable, match="no Java"):
        T.tokenize_all(texts + ["캐시에 없는 문장"], "okt", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown tokenizer"):
        T.tokenize_all(texts, "mecab", cache_dir=tmp_path)


def test_cache_survives_a_killed_run(tmp_path):
    n_done = T._COMMIT_EVERY + 50  # the process dies after one commit and inside the second batch
    script = textwrap.dedent(f"""
        import os, signal
        from capkit import text
        calls = 0
        def die_later(s):
            global calls
            calls += 1
            if calls > {n_done}:
                os.kill(os.getpid(), signal.SIGKILL)
            return s.split()
        texts = ["문장 %d 입니다" % i for i in range({n_done + 100})]
        text.tokenize_all(texts, text.Tokenizer("counting", die_later, "1"), cache_dir={str(tmp_path)!r})
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    con = sqlite3.connect(tmp_path / "tokens.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    texts = ["문장 %d 입니다" % i for i in range(n_done + 100)]
    tok = CountingTokenizer()
    again = T.tokenize_all(texts, tok, cache_dir=tmp_path)
    assert again.stats.hits == T._COMMIT_EVERY and tok.calls == len(texts) - T._COMMIT_EVERY
    assert again == [t.split() for t in texts]


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary

TRAIN = [["바다/Noun", "가/Josa", "예뻐요/Adjective"], ["바다/Noun", "최고/Noun"], ["카페/Noun", "최고/Noun"],
         ["바다/Noun", "카페/Noun", "ㅋㅋ/KoreanParticle"]]


def test_vocab_build_encode_decode():
    vocab = T.Vocab.build(TRAIN, min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "<start>", "<end>", "바다/Noun", "최고/Noun", "카페/Noun"]
    assert len(vocab) == 7 and vocab.stoi["바다/Noun"] == 4 and "ㅋㅋ/KoreanParticle" not in vocab
    ids = vocab.encode(["바다/Noun", "ㅋㅋ/KoreanParticle", "카페/Noun"])
    assert ids == [2, 4, 1, 6, 3]
    assert vocab.encode(["바다/Noun", "카페/Noun", "최고/Noun"], max_len=2) == [2, 4, 6, 3]
    assert vocab.decode(ids + [5, 0]) == ["바다/Noun", "<unk>", "카페/Noun"]
    assert vocab.decode(torch.tensor([2, 4, 1, 0, 3, 5]), keep_unk=False) == ["바다/Noun"]
    assert T.Vocab.build(TRAIN, min_freq=1, max_size=2).itos[4:] == ["바다/Noun", "최고/Noun"]
    assert T.oov_rate(vocab, [["바다/Noun", "파도/Noun"], ["카페/Noun", "최고/Noun"]]) == 0.25
    assert T.oov_rate(vocab, []) == 0.0


def test_vocab_is_deterministic(tmp_path):
    lists = [["b", "a", "c"], ["a", "b", "d"], ["c", "d"], ["e"]] * 3
    shuffled = lists[:]
    random.Random(1).shuffle(shuffled)
    shuffled = [random.Random(2).sample(t, len(t)) for t in shuffled]
    v1, v2 = T.Vocab.build(lists, min_freq=1), T.Vocab.build(shuffled, min_freq=1)
    assert v1.itos[4:] == ["a", "b", "c", "d", "e"]  # ties broken by the token itself
    v1.save(tmp_path / "v1.json", tokenizer="whitespace", split="train")
    v2.save(tmp_path / "v2.json", tokenizer="whitespace", split="train")
    assert (tmp_path / "v1.json").read_bytes() == (tmp_path / "v2.json").read_bytes()


def test_vocab_save_load_keeps_settings(tmp_path, okt_tokens):
    vocab = T.Vocab.build(okt_tokens, min_freq=2, max_size=50)
    vocab.save(tmp_path / "vocab_text.json", tokenizer="okt", split="train")
    saved = json.loads((tmp_path / "vocab_text.json").read_text(encoding="utf-8"))
    assert saved["settings"] == {"min_freq": 2, "max_size": 50, "tokenizer": "okt", "split": "train"}
    assert saved["counts"]["token_lists"] == len(SENTENCES) and saved["counts"]["tokens"] == sum(map(len, okt_tokens))
    again = T.Vocab.load(tmp_path / "vocab_text.json")
    assert again.itos == vocab.itos and again.stoi == vocab.stoi and again.same_tokens(vocab)
    assert again.settings == saved["settings"] and vocab.settings == {"min_freq": 2, "max_size": 50}  # not mutated
    assert again.freqs[4] == max(again.freqs)


# ---------------------------------------------------------------------------------------------------------------
# Corpus statistics (notebook 02_vocabulary)


def post(split, texts, hashtags=()):
    from types import SimpleNamespace

    return SimpleNamespace(split=split, texts=list(texts), hashtags=list(hashtags))


def test_tokenize_records_groups_texts_and_hashtags_by_split(tmp_path):
    records = [post("val", ["카페 최고"], ["#카페", "카페", "Cafe"]), post("train", ["바다 예뻐요", "바다 최고"], ["바다"]),
               post("train", ["산책 중"]), post("test", ["야경 최고 ㅋㅋ"], ["야경 #서울"])]
    corpus = R.tokenize_records(records, "whitespace", cache_dir=tmp_path)
    assert corpus.splits == ["train", "val", "test"] and corpus.tokenizer == "whitespace"
    assert corpus.texts["train"] == ["바다 예뻐요", "바다 최고", "산책 중"]
    assert corpus.tokens["train"] == [["바다", "예뻐요"], ["바다", "최고"], ["산책", "중"]]
    assert corpus.hashtags == {"train": [["바다"]], "val": [["카페", "cafe"]], "test": [["야경", "서울"]]}
    assert corpus.stats.texts == 5 and corpus.stats.misses == 5
    assert R.tokenize_records(records, "whitespace", cache_dir=tmp_path).stats.hits == 5
    sizes = corpus.sizes()
    assert sizes.loc["texts"].tolist() == [3, 1, 1] and sizes.loc["hashtags"].tolist() == [1, 2, 2]


def test_pos_distribution_and_top_tokens():
    pos = R.pos_distribution(TRAIN)
    assert pos.index.tolist()[0] == "Noun" and pos.loc["Noun", "tokens"] == 7 and pos.loc["Noun", "types"] == 3
    assert pos.loc["Noun", "share"] == 0.7 and pos["tokens"].sum() == 10
    assert pos.loc["Noun", "examples"] == "바다, 최고, 카페"
    assert R.pos_distribution([["ㅋㅋ", "바다/Noun"]]).loc["-", "examples"] == "ㅋㅋ"
    top = R.top_tokens(TRAIN, 2)
    assert top["token"].tolist() == ["바다/Noun", "최고/Noun"] and top.index.tolist() == [1, 2]
    assert top.loc[1, ["surface", "pos", "count", "docs", "doc_share"]].tolist() == ["바다", "Noun", 3, 3, 0.75]
    assert R.top_tokens(TRAIN, 5, pos={"Josa", "Adjective"})["token"].tolist() == ["가/Josa", "예뻐요/Adjective"]
    tags = R.top_tokens([["일상", "여행"], ["일상"]], 5)
    assert list(tags.columns) == ["token", "count", "share", "docs", "doc_share"] and tags.loc[1, "docs"] == 2


def test_vocab_coverage_agrees_with_vocab_build():
    held_out = [["바다/Noun", "파도/Noun"], ["카페/Noun", "가/Josa"]]
    table = R.vocab_coverage(TRAIN, {"val": held_out}, min_freqs=range(1, 5))
    assert table.index.tolist() == [1, 2, 3, 4]
    for min_freq, row in table.iterrows():
        vocab = T.Vocab.build(TRAIN, min_freq=min_freq)
        assert row["vocab_size"] == len(vocab) and row["oov_val"] == T.oov_rate(vocab, held_out)
    assert table["vocab_size"].is_monotonic_decreasing and table["oov_val"].is_monotonic_increasing
    assert table.loc[1, "train_coverage"] == 1.0 and table.loc[2, "train_coverage"] == 0.7
    vocab = T.Vocab.build(TRAIN, min_freq=2)
    summary = R.vocab_summary(vocab, {"val": held_out})
    assert summary["size"] == 7 and summary["oov_val"] == 0.5 and summary["tokens"] == 10
    assert R.top_oov(vocab, held_out + [["파도/Noun"]]).values.tolist() == [["파도/Noun", 2], ["가/Josa", 1]]


def test_roundtrip_examples_and_spacing_scores():
    texts = ["바다가 예뻐요", "카페 최고ㅋㅋ"]
    tokens = [["바다/Noun", "가/Josa", "예뻐요/Adjective"], ["카페/Noun", "최고/Noun", "ㅋㅋ/KoreanParticle"]]
    table = R.roundtrip_examples(texts, tokens)
    assert table["readable"].tolist() == texts and table["identical"].all()
    assert table.loc[0, "tokens"] == "바다/Noun 가/Josa 예뻐요/Adjective"
    assert len(R.roundtrip_examples(texts * 5, tokens * 5, n=3, seed=0)) == 3

    def spaced(toks):
        return " ".join(T.split_token(t)[0] for t in toks)

    scores = R.spacing_scores(texts, tokens, {"rules": DT.detokenize, "spaced": spaced})
    assert scores.loc["rules", ["identical", "boundary_accuracy"]].tolist() == [1.0, 1.0]
    assert scores.loc["spaced", "boundaries"] == 4 and scores.loc["spaced", "boundary_accuracy"] == 0.5
    assert scores.loc["spaced", "identical"] == 0.0


def test_cache_speedup_times_a_cold_and_a_cached_run(tmp_path):
    texts = [src for src, _ in SENTENCES]
    tok = CountingTokenizer()
    speed = R.cache_speedup(texts, tok, warmup=5)
    assert tok.calls == 1 + 5 + len(texts)  # start, warm-up, cold run; the cached run tokenizes nothing
    assert speed.loc["cold", "misses"] == speed.loc["cached", "hits"] == len(texts)
    assert speed.loc["cold", "hits"] == speed.loc["cached", "misses"] == 0
    assert speed.loc["cold", "speedup"] == 1.0 and speed.loc["cached", "tokens"] == speed.loc["cold", "tokens"]
    T.tokenize_all(texts[:3], tok, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="would not be cold"):
        R.cache_speedup(texts, tok, cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Word vectors

VEC_LINES = [
    "바다 0.125 -0.5 0.25",
    "바다/Noun 1.0 2.0 3.0",  # an exact token beats its surface form
    "부산 -1.5 0.0625 7",
    "seoul 0.1 0.2 0.3",
    "카페 -0.001 0.002 1e-3",
    "고양이 9 9 9",
]


def write_vec(path, header=True):
    path.write_text(("6 3\n" if header else "") + "\n".join(VEC_LINES) + "\n", encoding="utf-8")
    return path


def test_load_word_vectors_rows_equal_the_file(tmp_path):
    vocab = T.Vocab(list(T.SPECIALS) + ["바다/Noun", "#부산/Hashtag", "Seoul/Alpha", "카페", "파도/Noun"])
    matrix, report = W.load_word_vectors(write_vec(tmp_path / "tiny.vec"), vocab, seed=3)
    assert matrix.shape == (9, 3) and matrix.dtype == torch.float32
    expected = {4: [1.0, 2.0, 3.0], 5: [-1.5, 0.0625, 7.0], 6: [0.1, 0.2, 0.3], 7: [-0.001, 0.002, 1e-3]}
    for row, values in expected.items():
        assert torch.equal(matrix[row], torch.tensor(values, dtype=torch.float32))
    assert torch.equal(matrix[0], torch.zeros(3))
    assert report == {"found": 4, "total": 5, "coverage": 0.8, "dim": 3, "path": str(tmp_path / "tiny.vec")}
    again, _ = W.load_word_vectors(tmp_path / "tiny.vec", vocab, seed=3)
    other, _ = W.load_word_vectors(tmp_path / "tiny.vec", vocab, seed=4)
    assert torch.equal(again, matrix) and not torch.equal(other[8], matrix[8])
    assert 0 < matrix[8].abs().max() < 1


def test_load_word_vectors_headerless_dim_and_limit(tmp_path):
    vocab = T.Vocab(list(T.SPECIALS) + ["바다/Noun", "고양이/Noun"])
    matrix, report = W.load_word_vectors(write_vec(tmp_path / "nohead.vec", header=False), vocab, dim=3)
    assert report["found"] == 2 and torch.equal(matrix[5], torch.tensor([9.0, 9.0, 9.0]))
    _, limited = W.load_word_vectors(tmp_path / "nohead.vec", vocab, max_words=3)
    assert limited["found"] == 1
    with pytest.raises(ValueError):
        W.load_word_vectors(write_vec(tmp_path / "tiny.vec"), vocab, dim=300)
