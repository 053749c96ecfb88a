"""Okt tokenizing speed, cold and cached, and the tokenize -> detokenize round trip.

Run: ``python bench/bench_tokenize.py [--n 2000] [--seed 0]``. The sentences come from a small generator of
Instagram-style Korean posts (places, food, feelings, emoji, ㅋㅋ/ㅎㅎ, English words, numbers, hashtags).
"""

import argparse
import random
import re
import tempfile
import time

from capkit import detok as DT
from capkit import text as T

PLACES = ["해운대", "광안리", "경복궁", "남산타워", "제주도", "성산일출봉", "전주한옥마을", "북촌", "홍대", "명동", "강릉",
          "속초", "감천문화마을", "한강공원", "남이섬", "롯데월드", "서울숲", "을지로", "익선동", "경주", "여수", "부산"]
FOODS = ["커피", "파스타", "삼겹살", "치킨", "떡볶이", "빙수", "케이크", "마카롱", "라떼", "국밥", "회", "흑돼지",
         "짬뽕", "브런치", "햄버거", "초밥", "칼국수", "크로플"]
WHO = ["친구", "가족", "엄마", "남친", "여친", "동생", "회사 동기들", "우리 강아지", "언니"]
ADJ = ["예뻐요", "좋아요", "맛있어요", "최고예요", "멋있다", "예쁘다", "좋았어요", "행복했다", "맛있었다", "미쳤다"]
WHEN = ["오늘", "어제", "주말에", "아침부터", "퇴근하고", "오랜만에", "드디어", "지난주에", "휴가 첫날"]
LAUGH = ["", "", "ㅋㅋ", "ㅋㅋㅋ", "ㅎㅎ", " ㅎㅎ", " ㅠㅠ", "~~", "!!", "!", "."]
EMOJI = ["😍", "🌊", "☕", "📸", "💕", "🍰", "✨", "👍", "🌸", "🥰", "😋", "🔥", "😂"]
TAGS = ["#부산", "#여행", "#맛집", "#카페", "#데일리", "#일상", "#먹스타그램", "#여행스타그램", "#셀카", "#ootd",
        "#travel", "#seoul", "#주말", "#힐링", "#맞팔", "#2019"]
TEMPLATES = [
    "{when} {place}에서 {food} 먹었어요{laugh}",
    "{place} 바다 진짜 {adj}{laugh} {emoji}",
    "{who}(이)랑 {place} 다녀왔어요 {emoji}",
    "{place} 여행 {n}일차, 날씨가 너무 좋아요{laugh}",
    "{food} 맛집 발견{laugh} {tags}",
    "{when} {who}(이)랑 {food} 먹으러 왔어요{emoji}",
    "날씨가 좋아서 {place} 산책했어요 {emoji}",
    "{place} 야경 보면서 {food} 한잔{laugh}",
    "주말엔 역시 {food}(이)죠{laugh} {tags}",
    "{n}시간 기다려서 먹은 {food} 진짜 {adj}",
    "셀카 {n}장 찍었는데 건진 건 한 장{laugh}",
    "OOTD {emoji} 오늘은 {place} 나들이 {tags}",
    "{place} 카페 분위기 완전 {adj} {emoji}{emoji}",
    "I love {eng} {place}에서 {food} 먹는 중{laugh}",
    "{when} {place} 도착!! 너무 설렌다{laugh}",
    "{food} 먹고 싶어서 {place}까지 왔어요 {tags}",
    "{who} 생일 축하해{emoji} 사랑해{laugh}",
    "{place}(은)는 언제 와도 {adj}{laugh}",
    "비 오는 날엔 {food}에 막걸리{laugh}",
    "{n}월의 {place} {emoji} {tags}",
]


def attach_particles(s: str) -> str:
    """Resolve particle choices by the last syllable: 서울숲(은)는 -> 서울숲은, 친구(이)랑 -> 친구랑."""

    def pick(m):
        last, extra, rest = m.groups()
        final_consonant = (ord(last) - 0xAC00) % 28 != 0
        if extra == "은":
            return last + (extra if final_consonant else rest)
        return last + (extra + rest if final_consonant else rest)

    return re.sub(r"([가-힣])\((이|은)\)([가-힣])", pick, s)


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct Instagram-style sentences from the templates."""
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        s = rng.choice(TEMPLATES).format(
            when=rng.choice(WHEN), place=rng.choice(PLACES), food=rng.choice(FOODS), who=rng.choice(WHO),
            adj=rng.choice(ADJ), laugh=rng.choice(LAUGH), emoji=rng.choice(EMOJI), n=rng.randint(1, 12),
            tags=" ".join(rng.sample(TAGS, rng.randint(0, 3))), eng=rng.choice(["Seoul", "Busan", "Korea", "summer"]),
        )
        out.add(" ".join(attach_particles(s).split()))
    out = sorted(out)
    rng.shuffle(out)  # so that the fitting half and the held-out half mix all templates
    return out


def spacing_scores(outputs, references, token_lists):
    """Exact-match rate, and the share of token boundaries spaced as in the reference."""
    exact = sum(o == r for o, r in zip(outputs, references)) / len(references)
    right = total = 0
    for out, ref, tokens in zip(outputs, references, token_lists):
        surfaces = [T.split_token(t)[0] for t in tokens]
        for got, want in zip(DT.glue_flags(out, surfaces), DT.glue_flags(ref, surfaces)):
            if got is not None and want is not None:
                right += got == want
                total += 1
    return exact, right / max(total, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    texts = make_sentences(args.n, args.seed)
    print(f"{len(texts)} sentences, e.g. {texts[0]!r} / {texts[len(texts) // 2]!r}")

    started = time.perf_counter()
    okt = T.get_tokenizer("okt")
    okt("JVM 시작")
    print(f"Okt start (JVM): {time.perf_counter() - started:.2f} s")

    with tempfile.TemporaryDirectory() as cache_a, tempfile.TemporaryDirectory() as cache_b:
        cold = T.tokenize_all(texts, okt, cache_dir=cache_a)
        cold2 = T.tokenize_all(texts, okt, cache_dir=cache_b)  # cold again, with the JVM's code warmed up
        cached = T.tokenize_all(texts, okt, cache_dir=cache_a)
    for label, stats in [("cold (first pass)", cold.stats), ("cold (JIT warm)", cold2.stats), ("cached", cached.stats)]:
        print(f"{label:18s} {stats.tokens:6d} tokens in {stats.seconds:6.3f} s = {stats.tokens_per_second:10.0f} "
              f"tokens/s (hits {stats.hits}, misses {stats.misses})")
    print(f"cache speed-up: {cached.stats.tokens_per_second / cold2.stats.tokens_per_second:.0f}x over warm cold")

    # round trip against the text Okt saw (its normalisation shortens ㅋㅋㅋㅋ and the like)
    okt_engine = T._okt()
    references = [" ".join(okt_engine.normalize(t).split()) for t in texts]
    tokens = list(cold)
    rules = [DT.detokenize(t) for t in tokens]
    half = len(texts) // 2
    det = DT.Detokenizer.fit(texts[:half], tokens[:half])
    learned = [det(t) for t in tokens[half:]]
    exact, boundary = spacing_scores(rules[half:], references[half:], tokens[half:])
    print(f"round trip, okt, rules only     (held-out half): exact {exact:.3f}, boundaries right {boundary:.4f}")
    exact, boundary = spacing_scores(learned, references[half:], tokens[half:])
    print(f"round trip, okt, fitted on half (held-out half): exact {exact:.3f}, boundaries right {boundary:.4f}")
    surfaces = [[T.split_token(t)[0] for t in toks] for toks in tokens]  # okt_morph tokens
    det = DT.Detokenizer.fit(texts[:half], surfaces[:half])
    for label, outputs in [("rules only    ", [DT.detokenize(t) for t in surfaces[half:]]),
                           ("fitted on half", [det(t) for t in surfaces[half:]])]:
        exact, boundary = spacing_scores(outputs, references[half:], surfaces[half:])
        print(f"round trip, okt_morph, {label} (held-out half): exact {exact:.3f}, boundaries right {boundary:.4f}")
    for out, ref in [(o, r) for o, r in zip(rules[half:], references[half:]) if o != r][:5]:
        print(f"  rules: {out!r}\n  want : {ref!r}")


if __name__ == "__main__":
    main()
