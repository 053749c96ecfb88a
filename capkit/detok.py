"""Readable text from tokens: Korean spacing restored from morpheme tokens (rules, and a :class:`Detokenizer`
fitted on the training texts), English tokens joined by spaces.

``detokenize(tokens, tokenizer)`` spaces with hand-written rules (particles and endings attach to the word before,
punctuation to its neighbour, counters to their number); ``Detokenizer.fit(texts, token_lists)`` first asks how
often the training texts joined a token to the one before, and falls back on the rules for pairs it never saw;
``glue_flags`` reads a text's own spacing for scoring how well either restores it (``capkit.vocab_report``).

This module imports ``store`` and ``text`` (the token format: ``split_token``, the tag sets).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from capkit import store
from capkit.text import KIWI_AS_OKT, SPACED_TOKENIZERS, split_token

DROP_WHEN_READING = frozenset({"<pad>", "<start>", "<end>"})
ATTACH_TAGS = frozenset({"Josa", "Eomi", "PreEomi", "Suffix"})
OPENERS = frozenset("([{<“‘「『【《〈")
QUOTES = frozenset("\"'")
SPACED_PUNCT = frozenset({"-", "–", "—", "|", "/", "&", "+", "=", "@"})
COUNTERS = frozenset(
    "개 곳 명 분 시 초 번 살 잔 장 층 일 월 년 주 박 인 원 차 회 대 권 병 마리 그릇 인분 시간 주년 번째 가지 박스 km kg".split()
)
HA_FIRST = frozenset("하한할함합해했됐되된될됨됩돼")  # first syllables of 하다 / 되다 forms
HA_SHORT = frozenset({"해", "함", "됨", "돼", "됐", "했"})
AUX_PREV_LAST = frozenset("아어여해워와줘쳐봐져혀")  # a verb ending in -아/-어 ...
AUX_FIRST = ("보", "봐", "봤", "볼", "봅", "줘", "줬", "주", "줄", "버", "놓", "둬", "싶")  # ... then a helper verb
FINAL_SYLLABLES = frozenset("요다해당음죠네야지어아까니용듯함임")  # how a predicate often ends, for tokens without POS
ALWAYS_ATTACH = frozenset({"요"})  # the polite ending, whatever Okt calls it
DEMONSTRATIVE_NOUNS = frozenset("거 것 곳 쪽 건 게".split())
SURFACE_ATTACH = frozenset(  # common particles and endings, for tokens without a part of speech
    "은 는 이 가 을 를 에 엔 에서 의 도 랑 이랑 와 과 로 으로 까지 부터 한테 에게 께 처럼 보다 만큼 요 에요 이에요 예요 "
    "이야 야 죠 이다 이네 이라 들 째".split()
)


def _is_emoji(s: str) -> bool:
    """Symbols outside ASCII (emoji, hearts, ☕), with their joiners and variation selectors."""
    return bool(s) and all(
        ord(ch) > 127 and (unicodedata.category(ch) in ("So", "Sk", "Mn", "Cf") or 0x1F000 <= ord(ch) <= 0x1FAFF)
        for ch in s
    )


def _is_punct(s: str) -> bool:
    return bool(s) and all(
        unicodedata.category(ch).startswith("P") or (ord(ch) < 128 and not ch.isalnum() and not ch.isspace())
        for ch in s
    )


def _is_hangul(s: str) -> bool:
    return bool(s) and all("가" <= ch <= "힣" for ch in s)


def _is_jamo_laugh(s: str) -> bool:
    """ㅋㅋ, ㅎㅎ, ㅠㅠ, ㅜㅜ and the like (Hangul compatibility jamo only)."""
    return bool(s) and all("ㄱ" <= ch <= "ㅣ" for ch in s)


def _is_emoticon(s: str) -> bool:
    """Western emoticons such as ``:)`` ``;D`` ``=)``, which stand apart."""
    return len(s) >= 2 and s[0] in ":;=" and not s[1].isspace()


def rule_glue(prev_surface: str, prev_tag: str | None, surface: str, tag: str | None) -> bool:
    """Whether `surface` is written without a space after the previous token, by hand-written rules.

    Tags are Okt's; Kiwi's are read as the Okt tag they correspond to (`KIWI_AS_OKT`), plus two of their own:
    an auxiliary verb (``VX``) after a verb in -아/-어 is glued (``해`` + ``준``), and a Kiwi token of a 하다 /
    되다 suffix or the copula (``했어요/XSV``, ``이에요/VCP``) ends a predicate as a verb does."""
    if tag == "VX" and prev_tag in ("VV", "VA", "VX") and prev_surface[-1:] in AUX_PREV_LAST:
        return True
    kiwi_predicate = prev_tag in ("XSV", "XSA", "VCP")
    prev_tag = KIWI_AS_OKT[prev_tag] if prev_tag in KIWI_AS_OKT else prev_tag
    tag = KIWI_AS_OKT[tag] if tag in KIWI_AS_OKT else tag
    if prev_surface in OPENERS:
        return True
    if surface in OPENERS:
        return False
    predicate = kiwi_predicate or prev_tag in ("Verb", "Adjective", "Eomi", "PreEomi") or (
        prev_tag is None and _is_hangul(prev_surface) and prev_surface[-1] in FINAL_SYLLABLES
    )
    if _is_emoji(surface):
        # a run of emoji stays together; after a predicate it closes the sentence (좋아요😍), else it stands apart
        return _is_emoji(prev_surface) or predicate
    if tag == "Punctuation" or (tag is None and _is_punct(surface)):
        return not (surface in SPACED_PUNCT or _is_emoticon(surface))
    if tag in ATTACH_TAGS:
        return True
    if tag == "KoreanParticle" or (tag is None and _is_jamo_laugh(surface)):
        return surface[0] in "ㅋㅎ" and _is_hangul(prev_surface[-1:])  # 좋아요ㅋㅋ, 발견ㅋㅋ, but 맛있다 ㅠㅠ
    if surface in ALWAYS_ATTACH:
        return True
    if prev_tag == "Determiner" and prev_surface in ("이", "그", "저") and surface in DEMONSTRATIVE_NOUNS:
        return True  # 이거, 그곳
    if tag == "Foreign" and _is_hangul(surface):
        return True  # Okt labels some endings after numbers as Foreign ("12,000원 이라")
    prev_is_number = prev_tag == "Number" or (prev_tag is None and prev_surface[-1:].isdigit())
    if prev_is_number and tag in ("Noun", None) and surface in COUNTERS:
        return True
    if tag in ("Verb", "Adjective") and prev_tag == "Noun" and len(prev_surface) >= 2:
        if surface in HA_SHORT or (len(surface) >= 2 and surface[0] in HA_FIRST):
            return True  # 공부 + 했어요, 인정 + 합니다
    if tag in ("Verb", "Adjective") and prev_tag == "Verb" and prev_surface[-1:] in AUX_PREV_LAST:
        return surface.startswith(AUX_FIRST)  # 찍어 + 봤어요
    if tag is None and surface in SURFACE_ATTACH and _is_hangul(prev_surface):
        return True
    return False


def _render(tokens, glue) -> str:
    """Join tokens, asking ``glue(prev_token, token)`` at each boundary; quotes open and close in turn."""
    out, prev, quote_open, after_opener = [], None, False, False
    for token in tokens:
        if token in DROP_WHEN_READING:
            continue
        surface, _ = split_token(token)
        if prev is None:
            glued = True
        elif surface in QUOTES:
            glued = quote_open  # a closing quote sticks to the word before it
        else:
            glued = after_opener or glue(prev, token)
        after_opener = surface in QUOTES and not quote_open
        if surface in QUOTES:
            quote_open = not quote_open
        out.append(surface if glued else " " + surface)
        prev = token
    return "".join(out)


def _rule_glue_tokens(prev: str, token: str) -> bool:
    return rule_glue(*split_token(prev), *split_token(token))


def detokenize(tokens, tokenizer: str | None = None) -> str:
    """Readable text from tokens (``word/POS`` or surface forms), spacing by rules only.

    ``<pad>``, ``<start>`` and ``<end>`` are dropped; ``<unk>`` is shown. For ``tokenizer="whitespace"`` the
    tokens are simply joined with spaces. A fitted `Detokenizer` usually spaces better.
    """
    if tokenizer in SPACED_TOKENIZERS:
        return " ".join(t for t in tokens if t not in DROP_WHEN_READING)
    return _render(tokens, _rule_glue_tokens)


def glue_flags(text: str, surfaces) -> list[bool | None]:
    """For each token surface, whether it is glued to the previous one in `text` (None: first, or not found).

    Okt's normalisation may change a token (``되나욬`` -> ``되나요``, ``ㅋㅋㅋㅋㅋ`` -> ``ㅋㅋㅋ``); such a token
    is not found and gets None, and the next token is searched a little further on.
    """
    text = unicodedata.normalize("NFC", text)
    flags, cursor = [], 0
    for i, surface in enumerate(surfaces):
        j = cursor
        while j < len(text) and text[j].isspace():
            j += 1
        k = j if text.startswith(surface, j) else text.find(surface, j, j + len(surface) + 10)
        if k < 0 or not surface:
            flags.append(None)
            continue
        flags.append(None if i == 0 else (k > 0 and not text[k - 1].isspace()))
        cursor = k + len(surface)
    return flags


class Detokenizer:
    """Spacing learned from training texts: how often each token is glued to the one before it.

    A boundary is decided by the first of these that was seen at least `min_count` times with a clear majority:
    the token pair, then the token alone; else by `rule_glue`. (Counts per pair of parts of speech were tried
    as a third level: they are too coarse, e.g. Noun + Verb is glued for 공부 + 했어요 but not for 커피 + 마셔요,
    and overrode the more specific rules.)
    """

    def __init__(self, min_count: int = 2):
        self.min_count = min_count
        self.pairs: dict[str, list[int]] = {}  # "prev\ttoken" -> [glued, seen]
        self.tokens: dict[str, list[int]] = {}

    @classmethod
    def fit(cls, texts, token_lists, min_count: int = 2) -> "Detokenizer":
        """Learn from texts and their tokens (from the training split only)."""
        det = cls(min_count)
        for text, tokens in zip(texts, token_lists):
            det.update(text, tokens)
        return det

    def update(self, text: str, tokens) -> int:
        """Count the boundaries of one text; return how many were aligned."""
        flags = glue_flags(text, [split_token(t)[0] for t in tokens])
        aligned = 0
        for i in range(1, len(tokens)):
            if flags[i] is None:
                continue
            aligned += 1
            for table, key in ((self.pairs, tokens[i - 1] + "\t" + tokens[i]), (self.tokens, tokens[i])):
                count = table.setdefault(key, [0, 0])
                count[0] += int(flags[i])
                count[1] += 1
        return aligned

    def glue(self, prev: str, token: str) -> bool:
        """Whether `token` is written right after `prev`, without a space."""
        for table, key in ((self.pairs, prev + "\t" + token), (self.tokens, token)):
            glued, seen = table.get(key, (0, 0))
            if seen >= self.min_count and 2 * glued != seen:
                return 2 * glued > seen
        return _rule_glue_tokens(prev, token)

    def __call__(self, tokens) -> str:
        """Readable text from tokens (``<pad>``/``<start>``/``<end>`` dropped)."""
        return _render(tokens, self.glue)

    def to_dict(self) -> dict:
        return {"format": "capkit.detokenizer/1", "min_count": self.min_count,
                "pairs": self.pairs, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict) -> "Detokenizer":
        det = cls(d["min_count"])
        det.pairs, det.tokens = d["pairs"], d["tokens"]
        return det

    def save(self, path) -> None:
        store.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "Detokenizer":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
