"""The post writer: an Instagram-style Korean text and its hashtags, written from a scene.

`write_post` writes what the scene shows (so a model can learn it) plus noise that pixels cannot explain: the
place's name or a location tag, generic tags, emoji, casual sentence endings, synonyms. The facts in `CUES` are
always stated, in the text or a hashtag; every object is named with one of its `OBJECT_WORDS`, the word kept for
its box. The hashtags are `data.normalize_hashtags`'s output, as the loader keeps them.

Below the writer: the text grammar (sentence stems with their ending kinds, per place, scene fact and object;
hashtags and emoji), then the small helpers (particles, endings, Zipf-like picks).
"""

from __future__ import annotations

import re

from capkit.data import normalize_hashtags
from capkit.sample.grammar import OBJECT_WORDS, pick


def write_post(category, scene, rng):
    """Write (text, hashtags, words) for a scene; words maps each object label to the word used for it."""
    place = PLACES[category]
    locs = list(place["locs"]) or [loc for p in PLACES.values() for loc in p["locs"]][:12]
    loc = _zipf(rng, locs)
    spots = place["locs"].get(loc, [])
    named = bool(spots) and rng.random() < 0.65
    if category == "restaurant":
        spot = f"{rng.choice(spots)} {rng.choice(place['nouns'])}"
    else:
        spot = rng.choice(spots) if named else rng.choice(place["nouns"])
    labels = list(dict.fromkeys(scene["objects"]))
    words = {lab: rng.choice(PLACE_WORDS.get((lab, category), OBJECT_WORDS[lab])) for lab in labels}
    wkey = _weather_key(scene)
    values = {"time": scene["time"], "season": scene["season"], "weather": scene["weather"]}
    must = {"category", "season"} | ({"time"} if scene["time"] != "day" else set())
    must |= {"weather"} if scene["weather"] in ("rain", "fog", "snow") else set()

    # the opening sentence, maybe led in by one or two scene facts
    n_sent = pick(rng, {1: 0.05, 2: 0.3, 3: 0.45, 4: 0.2})
    intro = rng.choice(SELFIE_INTROS if category == "people" else INTROS)
    leads = [f for f in ("season", "weather", "time") if rng.random() < (0.5 if n_sent < 3 else 0.3)][:2]
    leads = leads if "{pre}" in intro[0] else []
    pre = "".join(rng.choice(LEAD_INS[f][values[f]]) + " " for f in leads)
    opener = (_fill(intro[0], pre=pre, spot=spot, loc=loc), intro[1], {"category", *leads})
    place_sents = list(place["sent"])
    rng.shuffle(place_sents)
    if rng.random() < 0.25:
        opener = (*place_sents.pop(), set())

    pool = []  # (priority, stem, kind, facts)
    for fact in ("season", "time", "weather"):
        if fact not in leads:
            key = wkey if fact == "weather" else values[fact]
            stem, kind = rng.choice(SCENE_SENTS[fact][key])
            pool.append((rng.random() + (0 if fact in must else 0.5), stem, kind, {fact}))
    for lab in labels:
        options = OBJECT_SENTS[lab]
        if category == "restaurant":  # nobody walks at the table
            options = [o for o in options if "산책" not in o[0] and "걸었" not in o[0]]
        stem, kind = rng.choice(options)
        pool.append((rng.random() * 0.5, _fill(stem, w=words[lab]), kind, {"obj:" + lab}))
    stem, kind = place_sents[0]
    pool.append((rng.random() + 0.3, stem, kind, set()))  # about the place, but names no place
    stem, kind = rng.choice(FILLERS)
    pool.append((rng.random() + 0.4, stem, kind, set()))
    pool.sort(key=lambda item: item[0])
    chosen = [opener] + [(s, k, f) for _, s, k, f in pool[: n_sent - 1]]
    if rng.random() < 0.2 and len(chosen) > 1:
        chosen.append(chosen.pop(0))  # sometimes the place comes last
    said = set().union(*(f for _, _, f in chosen))
    text = " ".join(_finish(rng, s, k) for s, k, _ in chosen)
    if rng.random() < 0.55:
        pool_e = [e for key in (scene["season"], scene["time"], scene["weather"], *labels)
                  for e in EMOJI.get(key, [])] + place["emoji"] + GENERIC_EMOJI
        text += " " + "".join(rng.choice(pool_e) for _ in range(rng.choice((1, 1, 2, 3))))

    # hashtags: grounded ones (forced for facts the text left out), then location and generic noise
    tags = []
    if rng.random() < 0.75:
        tags.append(loc)
    if category != "people" and rng.random() < 0.55:
        tags.append(spot.replace(" ", ""))
    if rng.random() < 0.3 and category != "restaurant":
        tags.append(loc + "여행")
    if "category" not in said or rng.random() < 0.9:
        tags += rng.sample(place["tags"], rng.choice((1, 1, 2, 3)))
    for fact, p in (("season", 0.6), ("time", 0.55), ("weather", 0.45)):
        if fact == "time" and values["time"] == "day" and rng.random() < 0.7:
            continue
        if fact == "weather" and wkey in ("clear", "cloudy") and rng.random() < 0.5:
            continue
        if (fact in must and fact not in said) or rng.random() < p:
            key = wkey if fact == "weather" else values[fact]
            tags += rng.sample(SCENE_TAGS[fact][key], rng.choice((1, 1, 2)))
    for lab in labels:
        if rng.random() < 0.35:
            tags.append(rng.choice(OBJECT_TAGS[lab]))
    n_generic = pick(rng, {0: 1, 1: 1.5, 2: 2, 3: 2, 4: 1.5, 5: 1, 6: 0.7, 7: 0.5, 8: 0.3})
    tags += [_zipf(rng, GENERIC_TAGS, 1.1) for _ in range(n_generic)]
    tags = normalize_hashtags(tags)[:15]
    while len(tags) < 3:
        tags = normalize_hashtags(tags + [_zipf(rng, GENERIC_TAGS, 1.1)])
    if rng.random() < 0.3:
        rng.shuffle(tags)
    return text, tags, words


# words a post is sure to contain (in text or in a hashtag) for the scene facts it always states
CUES = {
    "season": {"spring": ("벚꽃", "봄", "꽃"), "summer": ("여름",), "autumn": ("단풍", "가을"),
               "winter": ("겨울", "설경", "눈")},
    "time": {"sunset": ("노을", "해 질", "일몰", "석양"), "night": ("밤", "야경")},
    "weather": {"rain": ("비 ", "비가", "비오는", "빗", "우중"), "fog": ("안개",),
                "snow": ("눈 오는", "눈오는", "눈이", "함박눈")},
}


# ---------------------------------------------------------------------------------------------- the text grammar
# a narrower choice of words where the place decides it (gulls by the water, pigeons in town)
PLACE_WORDS = {("bird", c): ("갈매기", "새") for c in ("beach", "island", "lake")}
PLACE_WORDS.update({("bird", c): ("비둘기", "새") for c in ("park", "palace", "tower", "amusement_park", "people")})
PLACE_WORDS.update({("bird", c): ("새",) for c in ("cave", "mountain")})

PAST, EO, NOUN = "past", "eo", "noun"  # stem kinds: 다녀왔+어요, 예뻐+요, a finished phrase
ENDINGS = {
    PAST: {"어요": 4, "당": 2, "다": 2, "음": 1.5, "네요": 1.5, "어용": 1, "습니다": 0.5},
    EO: {"요": 4, "": 2, "용": 1},
    NOUN: {"": 1},
}
DECOR = {"": 5, "!": 2, "!!": 1.5, "~": 1, "ㅎㅎ": 1.5, " ㅎㅎ": 1, "ㅋㅋ": 1, " ㅋㅋㅋ": 0.7, ".": 1, " ㅠㅠ": 0.3}

# per category: generic nouns, locations (most frequent first) -> named spots, place hashtags, emoji,
# sentences about the landmark itself
PLACES = {
    "beach": dict(
        nouns=["바다", "해변", "바닷가"],
        locs={"부산": ["해운대", "광안리", "송정해수욕장"], "강릉": ["경포해변", "안목해변"],
              "제주도": ["협재해변", "함덕해변", "월정리해변"], "속초": ["속초해수욕장"],
              "양양": ["낙산해수욕장", "서피비치"], "태안": ["꽃지해수욕장"], "포항": ["영일대해수욕장"]},
        tags=["바다", "해변", "바다스타그램", "바닷가", "해수욕장", "오션뷰"],
        emoji=["🌊", "🏖️", "🐚"],
        sent=[("파도 소리 들으면서 멍때렸", PAST), ("바다 보니까 속이 뻥 뚫려", EO),
              ("바닷바람 맞으면서 걸었", PAST), ("모래사장 걷기 좋은 날", NOUN), ("오션뷰 미쳤", PAST)]),
    "palace": dict(
        nouns=["고궁", "궁궐"],
        locs={"서울": ["경복궁", "창덕궁", "덕수궁", "창경궁", "경희궁"], "수원": ["화성행궁"],
              "경주": ["동궁과월지"]},
        tags=["고궁", "궁궐", "고궁나들이", "한옥", "궁스타그램"],
        emoji=["🏯", "✨"],
        sent=[("단청이 너무 예뻐", EO), ("기와지붕 너무 멋있어", EO), ("고궁 한 바퀴 산책했", PAST),
              ("옛날 느낌 물씬", NOUN), ("궁궐 산책 코스 추천해", EO)]),
    "park": dict(
        nouns=["공원"],
        locs={"서울": ["한강공원", "서울숲", "올림픽공원", "여의도공원", "북서울꿈의숲"], "부산": ["부산시민공원"],
              "인천": ["센트럴파크"], "대구": ["달성공원"], "대전": ["한밭수목원"]},
        tags=["공원", "공원산책", "피크닉", "산책", "산책스타그램"],
        emoji=["🌳", "🌿", "🚶"],
        sent=[("공원 한 바퀴 산책했", PAST), ("벤치에 앉아서 쉬었", PAST), ("돗자리 펴고 피크닉", NOUN),
              ("나무 그늘 아래서 힐링", NOUN), ("산책하기 딱 좋은 공원", NOUN)]),
    "tower": dict(
        nouns=["타워", "전망대"],
        locs={"서울": ["남산타워", "남산서울타워", "서울타워"], "부산": ["부산타워"], "대구": ["83타워"]},
        tags=["타워", "전망대", "남산", "뷰맛집", "시티뷰"],
        emoji=["🗼", "🌆"],
        sent=[("타워 꼭대기까지 올라갔", PAST), ("전망대 뷰 미쳤", PAST), ("케이블카 타고 올라갔", PAST),
              ("시내가 한눈에 다 보여", EO), ("뷰 맛집 인정", NOUN)]),
    "restaurant": dict(
        nouns=["맛집", "레스토랑", "식당"],
        locs={"서울": ["강남", "홍대", "성수동", "을지로", "연남동", "이태원"], "부산": ["서면", "해리단길"],
              "전주": ["한옥마을"], "대구": ["동성로"], "제주도": ["애월"]},
        tags=["맛집", "먹스타그램", "맛스타그램", "맛집추천", "존맛", "레스토랑"],
        emoji=["🍝", "🍽️", "😋"],
        sent=[("분위기 좋은 식당 발견했", PAST), ("음식이 다 맛있었", PAST), ("파스타 존맛", NOUN),
              ("인생 맛집 찾았", PAST), ("여기 분위기 맛집 인정", NOUN)]),
    "cave": dict(
        nouns=["동굴"],
        locs={"제주도": ["만장굴", "협재굴"], "삼척": ["환선굴", "대금굴"], "단양": ["고수동굴"],
              "광명": ["광명동굴"], "정선": ["화암동굴"]},
        tags=["동굴", "동굴탐험", "천연동굴", "이색여행"],
        emoji=["🦇", "🔦"],
        sent=[("동굴 안이 시원했", PAST), ("조명이 너무 신비로워", EO), ("동굴 탐험 완료", NOUN),
              ("종유석이 신기했", PAST), ("동굴 속은 다른 세상 같아", EO)]),
    "island": dict(
        nouns=["섬"],
        locs={"제주도": ["우도", "비양도", "가파도"], "가평": ["남이섬"], "거제": ["외도", "지심도"],
              "통영": ["소매물도", "욕지도"], "울릉도": ["독도"], "인천": ["무의도", "석모도"]},
        tags=["섬", "섬여행", "섬스타그램", "에메랄드빛바다"],
        emoji=["🏝️", "🌊"],
        sent=[("섬 한 바퀴 돌았", PAST), ("섬 풍경이 그림 같아", EO), ("에메랄드빛 바다 실화냐", NOUN),
              ("섬 여행 최고", NOUN), ("섬까지 가는 길도 예뻤", PAST)]),
    "lake": dict(
        nouns=["호수", "호숫가"],
        locs={"서울": ["석촌호수"], "춘천": ["의암호", "소양호"], "고양": ["일산호수공원"], "제천": ["청풍호"],
              "대구": ["수성못"], "안동": ["월영교"]},
        tags=["호수", "호수공원", "호수뷰", "물멍"],
        emoji=["🦢", "💧"],
        sent=[("호숫가 따라 산책했", PAST), ("물에 비친 풍경이 너무 예뻐", EO), ("호수 보면서 물멍", NOUN),
              ("잔잔한 호수 보니까 마음이 편해", EO)]),
    "mountain": dict(
        nouns=["산"],
        locs={"서울": ["북한산", "관악산", "인왕산"], "제주도": ["한라산"], "속초": ["설악산"], "구례": ["지리산"],
              "광주": ["무등산"], "정읍": ["내장산"]},
        tags=["등산", "산", "등산스타그램", "등린이", "정상", "산스타그램"],
        emoji=["⛰️", "🏔️", "🥾"],
        sent=[("정상까지 올라갔", PAST), ("등산 완료", NOUN), ("산 공기가 너무 좋아", EO),
              ("힘들었지만 정상 뷰 보니까 다 잊었", PAST), ("등린이 정상 찍었", PAST)]),
    "amusement_park": dict(
        nouns=["놀이공원", "놀이동산"],
        locs={"서울": ["롯데월드"], "용인": ["에버랜드"], "경주": ["경주월드"], "대구": ["이월드"],
              "과천": ["서울랜드"]},
        tags=["놀이공원", "놀이동산", "관람차", "롤러코스터", "놀이기구"],
        emoji=["🎡", "🎢", "🎠"],
        sent=[("관람차 탔", PAST), ("롤러코스터 타고 소리 질렀", PAST), ("놀이기구 다 탔", PAST),
              ("동심으로 돌아간 하루", NOUN), ("관람차에서 보는 풍경 최고", NOUN)]),
    "people": dict(
        nouns=["셀카"],
        locs={},  # a selfie borrows a location from any other category
        tags=["셀카", "셀스타그램", "얼스타그램", "셀피", "셀기꾼", "오늘의나"],
        emoji=["🤳", "😊", "💕"],
        sent=[("오늘의 셀카", NOUN), ("셀카 한 장 남겨", EO), ("간만에 셀카", NOUN), ("셀카 찍기 좋은 날", NOUN)]),
}

# sentences that open a post; {pre} is an optional time/weather/season lead-in, {spot} the place
INTROS = [("{pre}{spot} 다녀왔", PAST), ("{pre}{spot} 놀러 갔", PAST), ("오랜만에 {pre}{spot} 나들이", NOUN),
          ("{pre}드디어 {spot} 왔", PAST), ("{loc} 여행 중에 {pre}{spot} 들렀", PAST),
          ("{pre}{spot}에서 보낸 하루", NOUN), ("주말에 {pre}{spot} 다녀왔", PAST)]
SELFIE_INTROS = [("{pre}{loc} 놀러 와서 셀카 찍었", PAST), ("{pre}셀카 한 장", NOUN), ("{pre}오늘의 셀카", NOUN),
                 ("{loc} 여행 기념 셀카", NOUN)]

LEAD_INS = {
    "time": {"day": ["낮에", "오후에", "점심 먹고"], "sunset": ["해 질 무렵", "노을 질 때", "해 질 녘에"],
             "night": ["밤에", "늦은 밤", "야경 보러"]},
    "weather": {"clear": ["날씨 좋은 날", "맑은 날"], "cloudy": ["흐린 날", "구름 낀 날"],
                "rain": ["비 오는 날", "비 맞으면서"], "fog": ["안개 낀 날"], "snow": ["눈 오는 날", "함박눈 맞으며"]},
    "season": {"spring": ["벚꽃 필 때", "봄날에", "벚꽃 시즌에"], "summer": ["한여름에", "여름휴가로"],
               "autumn": ["단풍 시즌에", "가을에"], "winter": ["한겨울에", "눈 쌓인 날"]},
}

SCENE_SENTS = {
    "season": {
        "spring": [("벚꽃이 활짝 피었", PAST), ("벚꽃 보러 왔", PAST), ("벚꽃이 흩날려서 너무 예뻐", EO),
                   ("봄이 왔나 봐", EO), ("벚꽃 엔딩 각", NOUN), ("꽃비 맞으면서 걸었", PAST)],
        "summer": [("초록초록한 여름", NOUN), ("더워도 여름이 좋아", EO), ("여름휴가 왔", PAST),
                   ("푸릇푸릇 여름 느낌", NOUN), ("여름 느낌 가득", NOUN)],
        "autumn": [("단풍이 예쁘게 물들었", PAST), ("단풍 구경 왔", PAST), ("알록달록 단풍 너무 예뻐", EO),
                   ("가을 타는 중", NOUN), ("가을이 깊어졌", PAST)],
        "winter": [("하얀 눈이 소복이 쌓였", PAST), ("온통 눈으로 덮였", PAST), ("설경이 너무 예뻐", EO),
                   ("겨울왕국이 따로 없네", NOUN), ("추워도 눈 구경은 못 참지", NOUN)],
    },
    "time": {
        "day": [("오후의 여유", NOUN), ("낮에 오길 잘했", PAST)],
        "sunset": [("노을이 너무 예뻐", EO), ("해 질 녘 하늘 보면서 멍때렸", PAST), ("붉은 노을 보러 왔", PAST),
                   ("노을 맛집 인정", NOUN), ("일몰 시간 맞춰서 갔", PAST)],
        "night": [("야경이 진짜 예뻐", EO), ("밤 산책 나왔", PAST), ("반짝반짝 야경 보면서 힐링했", PAST),
                  ("야경 맛집 인정", NOUN), ("밤에 오니까 분위기 최고", NOUN)],
    },
    "weather": {
        "clear": [("하늘이 너무 맑아", EO), ("파란 하늘 실화냐", NOUN), ("날씨가 다 했", PAST)],
        "clear_night": [("별이 쏟아질 것 같아", EO), ("밤하늘에 별이 가득", NOUN)],
        "cloudy": [("구름이 잔뜩 꼈", PAST), ("흐린 날도 운치 있고 좋아", EO), ("구름 낀 하늘", NOUN)],
        "rain": [("비가 추적추적 내렸", PAST), ("비 오는 날의 감성", NOUN), ("비가 와도 좋아", EO),
                 ("빗소리 들으면서 걸었", PAST)],
        "fog": [("안개가 자욱했", PAST), ("안개 때문에 몽환적인 분위기", NOUN), ("안개가 잔뜩 꼈", PAST)],
        "snow": [("눈이 펑펑 내렸", PAST), ("함박눈 맞으면서 걸었", PAST), ("눈 오는 날 감성", NOUN)],
    },
}

# {w} is the object's word; {w|이} adds the right particle (이/가, 은/는, 을/를, 과/와, 이랑/랑, 도)
OBJECT_SENTS = {
    "person": [("{w|이랑} 같이 왔", PAST), ("{w|이} 찍어준 사진", NOUN), ("{w|이랑} 수다 떨면서 걸었", PAST),
               ("{w|과} 함께한 하루", NOUN)],
    "dog": [("우리 {w|이랑} 산책했", PAST), ("{w|이} 신나서 뛰어다녔", PAST), ("{w|도} 같이 왔", PAST),
            ("{w} 산책 코스로 딱", NOUN)],
    "cat": [("{w|이} 반겨줬", PAST), ("귀여운 {w} 발견", NOUN), ("{w|이} 너무 귀여워", EO)],
    "boat": [("{w} 타고 한 바퀴 돌았", PAST), ("{w|이} 둥둥 떠 있는 풍경", NOUN), ("{w} 위에서 사진 찍었", PAST)],
    "bird": [("{w|이} 날아다녀", EO), ("{w} 구경하는 재미", NOUN), ("{w|이} 머리 위로 날아갔", PAST)],
    "balloon": [("{w} 하나 샀", PAST), ("{w} 들고 찰칵", NOUN), ("알록달록 {w|이} 너무 예뻐", EO)],
    "coffee": [("{w} 한 잔의 여유", NOUN), ("{w} 마시면서 쉬었", PAST), ("{w|은} 못 참지", NOUN),
               ("{w} 들고 산책", NOUN)],
    "bicycle": [("{w} 타고 달렸", PAST), ("{w} 빌려서 한 바퀴 돌았", PAST), ("{w} 타기 딱 좋은 날", NOUN)],
    "car": [("{w} 타고 드라이브 왔", PAST), ("{w} 세워두고 한 컷", NOUN), ("{w|을} 타고 달렸", PAST)],
    "ice_cream": [("{w} 먹으면서 걸었", PAST), ("{w|은} 못 참지", NOUN), ("{w} 하나씩 들고 산책", NOUN)],
    "umbrella": [("{w} 쓰고 걸었", PAST), ("{w} 챙기길 잘했", PAST), ("{w} 쓰고 한 컷", NOUN)],
    "cake": [("디저트로 {w}까지 먹었", PAST), ("{w|이} 진짜 맛있어", EO), ("{w} 비주얼 대박", NOUN)],
    "snowman": [("{w} 만들었", PAST), ("귀여운 {w} 발견", NOUN), ("{w|이랑} 사진 찍었", PAST)],
}

FILLERS = [("행복한 하루", NOUN), ("또 오고 싶다", NOUN), ("힐링 제대로 했", PAST), ("사진이 실물을 못 담아", EO),
           ("다음에 또 와야지", NOUN), ("인생샷 건졌", PAST), ("여기 진짜 추천해", EO), ("주말 순삭", NOUN),
           ("기록용", NOUN), ("오늘도 수고했어", NOUN)]

SCENE_TAGS = {
    "season": {"spring": ["벚꽃", "봄", "벚꽃명소", "봄스타그램", "꽃놀이"],
               "summer": ["여름", "여름휴가", "여름여행", "여름스타그램"],
               "autumn": ["단풍", "가을", "가을여행", "단풍명소", "가을스타그램"],
               "winter": ["겨울", "설경", "겨울여행", "눈꽃", "겨울스타그램"]},
    "time": {"day": ["낮", "오후"], "sunset": ["노을", "일몰", "석양", "노을맛집"],
             "night": ["야경", "밤", "야경맛집", "밤산책"]},
    "weather": {"clear": ["맑음", "하늘", "하늘스타그램", "날씨좋다"], "clear_night": ["별", "밤하늘"],
                "cloudy": ["흐림", "구름"], "rain": ["비오는날", "우중산책", "빗소리"],
                "fog": ["안개", "안개낀날"], "snow": ["눈오는날", "함박눈"]},
}
OBJECT_TAGS = {
    "person": ["친구", "우정스타그램", "데이트"], "dog": ["강아지", "댕스타그램", "멍스타그램", "반려견"],
    "cat": ["고양이", "냥스타그램", "길냥이"], "boat": ["요트", "보트", "요트투어"], "bird": ["갈매기", "새"],
    "balloon": ["풍선"], "coffee": ["커피", "카페", "커피스타그램", "아메리카노"], "bicycle": ["자전거", "라이딩"],
    "car": ["드라이브", "자동차"], "ice_cream": ["아이스크림"], "umbrella": ["우산"],
    "cake": ["케이크", "디저트"], "snowman": ["눈사람"],
}
# generic tags, most frequent first (drawn with Zipf-like weights 1 / rank)
GENERIC_TAGS = ["일상", "데일리", "여행", "여행스타그램", "소통", "맞팔", "국내여행", "선팔", "일상스타그램",
                "좋아요", "주말", "힐링", "감성", "좋반", "나들이", "행복", "사진", "팔로우", "감성사진",
                "여행에미치다", "휴가", "폰카", "주말나들이", "인스타", "사진스타그램", "럽스타그램", "데이트"]
EMOJI = {"spring": ["🌸"], "summer": ["☀️", "🌿"], "autumn": ["🍁", "🍂"], "winter": ["❄️", "⛄"],
         "sunset": ["🌅"], "night": ["🌃", "🌙", "✨"], "rain": ["☔"], "snow": ["❄️"],
         "dog": ["🐶"], "cat": ["🐱"], "coffee": ["☕"], "ice_cream": ["🍦"], "balloon": ["🎈"],
         "cake": ["🍰"], "boat": ["⛵"]}
GENERIC_EMOJI = ["😊", "😍", "💕", "✨", "👍", "🥰", "❤️", "📸"]


# ------------------------------------------------------------------------------------------------------- helpers
def _weather_key(scene):
    return "clear_night" if scene["weather"] == "clear" and scene["time"] == "night" else scene["weather"]


def _finish(rng, stem, kind):
    """Give a stem a casual sentence ending and maybe a decoration."""
    return stem + pick(rng, ENDINGS[kind]) + pick(rng, DECOR)


def _fill(template, **slots):
    """Fill {slot} and {slot|particle} fields."""
    return re.sub(r"\{(\w+)(?:\|(\w+))?\}",
                  lambda m: _josa(slots[m[1]], m[2]) if m[2] else slots[m[1]], template)


def _josa(word, particle):
    """Attach a Korean particle in the form the last syllable asks for (이/가, 은/는, 을/를 ...)."""
    forms = {"이": ("이", "가"), "은": ("은", "는"), "을": ("을", "를"), "과": ("과", "와"), "이랑": ("이랑", "랑")}
    if particle not in forms:
        return word + particle
    code = ord(word[-1]) - 0xAC00
    closed = 0 <= code < 11172 and code % 28 != 0
    return word + forms[particle][0 if closed else 1]


def _zipf(rng, items, s=1.0):
    """Pick from a list whose first items are the most frequent."""
    return rng.choices(items, weights=[1 / (k + 1) ** s for k in range(len(items))])[0]
