"""Korean text layer: tokenizers, the token format, token cache, vocabularies (readable text from tokens:
``capkit.detok``; corpus statistics: ``capkit.vocab_report``; word vectors: ``capkit.word_vectors``).

Tokenizers (chosen by name, see `get_tokenizer`):

- ``okt``: konlpy Okt ``pos(text, norm=True, join=True)``, tokens such as ``바다/Noun``, as the study did.
  Hashtags inside a text are cut out first and kept whole (``#부산/Hashtag``); Okt alone splits some of them
  (``#2019`` -> ``#`` + ``2019``, ``#부산#해운대`` -> three tokens).
- ``okt_morph``: the same tokens without the part of speech (``바다``).
- ``kiwi``: kiwipiepy's morpheme analysis (no Java), as Okt-like ``surface/Tag`` tokens with Kiwi's Sejong tags:
  a predicate is one token with its endings as written (``예뻤어요/VA``, Okt: ``예뻤어요/Adjective``), particles
  and suffixes are their own tokens (``바다/NNG``, ``가/JKS``, ``했어요/XSV``); hashtags are cut out first and
  kept whole as for Okt; the surfaces are the text's own characters (nothing normalised), so the text without
  spaces is the tokens' surfaces joined.
- ``english``: raw English captions (COCO, Flickr) as the field's caption evaluation scores them (pycocoevalcap's
  PTB tokenizer): lower case, clitics split off (``dog's`` -> ``dog 's``, ``don't`` -> ``do n't``), punctuation
  dropped, hyphenated words and numbers kept whole (``t-shirt``, ``3.5``). No Java. Letters of any script count
  as word characters, so captions in other languages written with spaces tokenize the same way.
- ``whitespace``: NFC, then ``str.split()``; for text that is already tokenized.
- ``auto``: not a tokenizer but a choice (:func:`resolve_tokenizer`): ``english`` for the English caption
  sources and for texts written mostly in Latin letters, else ``okt``.

This module imports ``store`` (atomic JSON writes).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from capkit import store

TEXT_LAYER_VERSION = "1"  # bump when the token output of a tokenizer changes (invalidates token caches)
TOKENIZERS = ("okt", "okt_morph", "kiwi", "english", "whitespace", "auto")
SPACED_TOKENIZERS = ("english", "whitespace")  # their tokens read back joined by single spaces
KIWI_HINT = "`pip install kiwipiepy` (it brings its model package, kiwipiepy_model; no Java needed)"
JAVA_HINT = (
    "install a Java JDK (Debian/Ubuntu: `apt-get install default-jdk`; conda: "
    "`conda install -c conda-forge openjdk`), then make sure `java` is on PATH or JAVA_HOME points at it"
)
HASHTAG_RE = re.compile(r"(?<![/&])#\w+")  # not inside a URL (/#part) or an HTML entity (&#39;)


class TokenizerUnavailable(RuntimeError):
    """A tokenizer cannot run on this machine (for Okt: no usable Java)."""


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


class Tokenizer:
    """A named callable: ``tokenizer(text) -> list[str]``; ``version`` keys the token cache."""

    def __init__(self, name: str, func, version: str):
        self.name = name
        self.func = func
        self.version = version

    def __call__(self, text: str) -> list[str]:
        if not text:
            return []
        return self.func(text)

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, version={self.version!r})"


_OKT = None  # the process-wide Okt instance (starting the JVM takes ~1-2 s)


def _find_jvm():
    """Return the JVM library path, or raise TokenizerUnavailable saying what to install."""
    try:
        import jpype
    except ImportError as err:
        raise TokenizerUnavailable(
            "the `okt` tokenizer needs konlpy and JPype1 (`pip install konlpy`) and Java: " + JAVA_HINT
        ) from err
    if jpype.isJVMStarted():
        return None
    try:
        return jpype.getDefaultJVMPath()
    except Exception as err:  # jpype's JVMNotFoundException / JVMNotSupportedException
        raise TokenizerUnavailable(
            f"the `okt` tokenizer needs Java, but no Java virtual machine was found ({err}). "
            f"To fix: {JAVA_HINT}. The `whitespace` tokenizer works without Java."
        ) from err


def _okt():
    """The Okt instance, created on first use."""
    global _OKT
    if _OKT is None:
        jvm_path = _find_jvm()
        try:
            from konlpy.tag import Okt

            _OKT = Okt(jvmpath=jvm_path)
        except Exception as err:
            raise TokenizerUnavailable(
                f"the `okt` tokenizer could not start Java ({type(err).__name__}: {err}). To fix: {JAVA_HINT}."
            ) from err
    return _OKT


def _okt_tokens(text: str) -> list[str]:
    """Okt ``word/POS`` tokens, with hashtags cut out first and kept whole."""
    text = unicodedata.normalize("NFC", text)
    okt = _okt()
    tokens, start = [], 0
    for match in HASHTAG_RE.finditer(text):
        piece = text[start : match.start()]
        if piece.strip():
            tokens += okt.pos(piece, norm=True, join=True)
        tokens.append(match.group() + "/Hashtag")
        start = match.end()
    piece = text[start:]
    if piece.strip():
        tokens += okt.pos(piece, norm=True, join=True)
    return tokens


def _okt_morph_tokens(text: str) -> list[str]:
    return [token.rsplit("/", 1)[0] for token in _okt_tokens(text)]


def _whitespace_tokens(text: str) -> list[str]:
    return unicodedata.normalize("NFC", text).split()


# PTB's tokens that survive the evaluation's punctuation filter: clitics, abbreviations with their dot
# (mr., d.c., s.c.u.b.a.), words of letters / digits joined by inner hyphens, apostrophes or dots (t-shirt,
# o'clock, 3.5), and the symbols # & $ % (PTB keeps them as tokens of their own)
_EN_ABBREVIATIONS = "mr|mrs|ms|dr|jr|sr|st|vs|etc|mt|inc|co|no"
_EN_TOKEN = re.compile(r"n't\b|'(?:s|re|ve|ll|d|m)\b"
                       rf"|(?:\b(?:{_EN_ABBREVIATIONS})|\b[^\W\d_](?:\.[^\W\d_])*)\.(?![^\W_])"
                       r"|[^\W_]+(?:[-'.][^\W_]+)*|[#&$%]")
_EN_CLITIC = re.compile(r"([^\W_])(n't|'(?:s|re|ve|ll|d|m))\b")


def _english_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _EN_CLITIC.sub(r"\1 \2", text)  # "dog's" -> "dog 's" (PTB's split); punctuation never matches a token
    text = re.sub(r"\bcannot\b", "can not", text)
    return _EN_TOKEN.findall(text)


ENGLISH_DATASETS = ("coco", "karpathy", "flickr8k")


def resolve_tokenizer(name: str, dataset: str = "", texts=()) -> str:
    """The tokenizer ``name`` stands for: itself, or for ``"auto"`` ``english`` when the source is one of the
    English caption sources (ENGLISH_DATASETS) or when most letters of ``texts`` (a sample of the data's texts)
    are Latin, else ``okt`` (the study's)."""
    if name != "auto":
        if name not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
        return name
    if dataset in ENGLISH_DATASETS:
        return "english"
    letters = [c for t in list(texts)[:2000] for c in t if c.isalpha()]
    latin = sum(c.isascii() or "LATIN" in unicodedata.name(c, "") for c in letters)
    return "english" if letters and latin > len(letters) / 2 else "okt"


_KIWI = None  # the process-wide Kiwi instance (loading its model takes ~2 s)
KIWI_JOINS = ("E", "Z_")  # endings (EP, EF, EC, ETN, ETM) and coda fragments (Z_CODA) join the morpheme before


def _kiwi():
    """The Kiwi instance, created on first use."""
    global _KIWI
    if _KIWI is None:
        try:
            from kiwipiepy import Kiwi
        except ImportError as err:
            raise TokenizerUnavailable(f"the `kiwi` tokenizer needs kiwipiepy: {KIWI_HINT}") from err
        _KIWI = Kiwi()
    return _KIWI


def _kiwi_piece(piece: str) -> list[str]:
    """``surface/Tag`` tokens of a text without hashtags.

    Kiwi gives morphemes in their dictionary form (``예쁘/VA 었/EP 어요/EF``) with their place in the text. A
    morpheme that overlaps the one before it (``오/VV 었/EP`` are both ``왔``) or an ending right after it joins
    that token, so each token is a run of the text's own characters (``예뻤어요``) with its first morpheme's tag
    (irregular marks dropped: ``VA-I`` -> ``VA``). Characters no morpheme covers are kept as ``/UN`` tokens.
    """
    spans: list[list] = []  # [start, end, tag]
    for m in _kiwi().tokenize(piece):
        tag = m.tag.split("-")[0]
        start, end = m.start, m.start + m.len
        if spans and (start < spans[-1][1] or (tag.startswith(KIWI_JOINS) and start == spans[-1][1])):
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end, tag])
    tokens, cursor = [], 0
    for start, end, tag in spans:
        tokens += [f"{gap}/UN" for gap in piece[cursor:start].split()]
        tokens += [f"{part}/{tag}" for part in piece[max(start, cursor):end].split()]
        cursor = max(cursor, end)
    return tokens + [f"{gap}/UN" for gap in piece[cursor:].split()]


def _kiwi_tokens(text: str) -> list[str]:
    """Kiwi ``surface/Tag`` tokens, with hashtags cut out first and kept whole (as `_okt_tokens`)."""
    text = unicodedata.normalize("NFC", text)
    tokens, start = [], 0
    for match in HASHTAG_RE.finditer(text):
        piece = text[start : match.start()]
        if piece.strip():
            tokens += _kiwi_piece(piece)
        tokens.append(match.group() + "/Hashtag")
        start = match.end()
    piece = text[start:]
    if piece.strip():
        tokens += _kiwi_piece(piece)
    return tokens


def _package_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "unknown"


def _konlpy_version() -> str:
    return _package_version("konlpy")


def get_tokenizer(name: str) -> Tokenizer:
    """Return the tokenizer called `name` (one of TOKENIZERS).

    ``okt`` and ``okt_morph`` raise TokenizerUnavailable at once when no Java can be found, ``kiwi`` when
    kiwipiepy is not installed; Okt and Kiwi themselves start on the first call and are shared by the process.
    """
    if name == "auto":
        raise ValueError("tokenizer 'auto' is a choice, not a tokenizer: resolve_tokenizer('auto', dataset, texts) "
                         "names the one to use")
    version = tokenizer_version(name)
    if name in ("okt", "okt_morph"):
        if _OKT is None:
            _find_jvm()
        return Tokenizer(name, _okt_tokens if name == "okt" else _okt_morph_tokens, version)
    if name == "kiwi":
        import importlib.util

        if _KIWI is None and importlib.util.find_spec("kiwipiepy") is None:
            raise TokenizerUnavailable(f"the `kiwi` tokenizer needs kiwipiepy: {KIWI_HINT}")
        return Tokenizer("kiwi", _kiwi_tokens, version)
    if name == "english":
        return Tokenizer("english", _english_tokens, version)
    return Tokenizer("whitespace", _whitespace_tokens, version)


def tokenizer_version(name: str) -> str:
    """The version that keys `name`'s entries in the token cache; needs no Java (nor kiwipiepy)."""
    if name == "whitespace":
        return TEXT_LAYER_VERSION
    if name == "english":
        return f"english-1.{TEXT_LAYER_VERSION}"
    if name in ("okt", "okt_morph"):
        return f"konlpy-{_konlpy_version()}.{TEXT_LAYER_VERSION}"
    if name == "kiwi":  # the analyser and its model both decide the tokens
        return (f"kiwipiepy-{_package_version('kiwipiepy')}+model-{_package_version('kiwipiepy_model')}"
                f".{TEXT_LAYER_VERSION}")
    raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")


# ---------------------------------------------------------------------------------------------------------------
# Token format: ``surface/Tag``

OKT_TAGS = frozenset(
    "Adjective Adverb Alpha Conjunction Determiner Eomi Exclamation Foreign Hashtag Josa KoreanParticle Modifier "
    "Noun Number PreEomi Punctuation ScreenName Suffix Unknown Verb VerbPrefix Email URL".split()
)
# Kiwi's tags (Sejong, plus its W_ web and Z_ fragment tags) as the Okt tag the spacing rules know them by;
# None: the surface decides (emoji, ㅋㅋ, symbols).
KIWI_AS_OKT = {
    **dict.fromkeys("NNG NNP NNB NR NP XR".split(), "Noun"), **dict.fromkeys("VV VX".split(), "Verb"),
    **dict.fromkeys("VA VCN".split(), "Adjective"), **dict.fromkeys("MAG MAJ".split(), "Adverb"),
    **dict.fromkeys("JKS JKC JKG JKO JKB JKV JKQ JX JC VCP".split(), "Josa"),  # the copula attaches like one
    **dict.fromkeys("EP EF EC ETN ETM Z_CODA Z_SIOT".split(), "Eomi"),
    **dict.fromkeys("XSN XSV XSA XSM".split(), "Suffix"),
    **dict.fromkeys("SF SP SS SSO SSC SE".split(), "Punctuation"),
    **dict.fromkeys("SO SW SB UN W_EMOJI".split(), None),
    "XPN": "VerbPrefix", "MM": "Determiner", "IC": "Exclamation", "SN": "Number", "W_SERIAL": "Number",
    "SL": "Alpha", "SH": "Foreign", "W_HASHTAG": "Hashtag", "W_URL": "URL", "W_EMAIL": "Email",
    "W_MENTION": "ScreenName",
}
KIWI_TAGS = frozenset(KIWI_AS_OKT)


def split_token(token: str) -> tuple[str, str | None]:
    """``'바다/Noun'`` -> ``('바다', 'Noun')`` (Okt or Kiwi tags); a token without a known tag -> ``(token, None)``."""
    surface, sep, tag = token.rpartition("/")
    if sep and surface and (tag in OKT_TAGS or tag in KIWI_TAGS):
        return surface, tag
    return token, None


# ---------------------------------------------------------------------------------------------------------------
# Token cache


@dataclass
class TokenizeStats:
    """What one `tokenize_all` call did: unique texts found in the cache (hits) or tokenized (misses)."""

    tokenizer: str
    texts: int = 0
    unique: int = 0
    hits: int = 0
    misses: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


class Tokenized(list):
    """The token lists of `tokenize_all`, one per text, with the call's `stats` (a TokenizeStats)."""

    stats: TokenizeStats


_CACHE_FILE = "tokens.sqlite"
_COMMIT_EVERY = 256


def _open_cache(cache_dir) -> sqlite3.Connection:
    """The token cache's connection; while another process writes, a statement waits for it (up to 60 s)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(Path(cache_dir) / _CACHE_FILE, timeout=60)
    with con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS tokens (tokenizer TEXT, text TEXT, tokens TEXT, PRIMARY KEY (tokenizer, text))"
        )
    return con


def _store_tokens(con: sqlite3.Connection, rows: list[tuple]) -> None:
    """Write ``(tokenizer, text, tokens)`` rows in one transaction that takes the write lock as it begins
    (``BEGIN IMMEDIATE``): concurrent writers then queue on the busy timeout and never fail half-way."""
    with con:
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?)", rows)


def tokenize_all(texts, tokenizer, cache_dir=None, progress: bool = False) -> Tokenized:
    """Tokenize many texts, reusing the on-disk cache in `cache_dir` (a sqlite file) when given.

    `tokenizer` is a Tokenizer or a name. The cache is keyed by (tokenizer name and version, text); new entries
    are committed every few hundred texts in sqlite transactions, so a killed run keeps what it committed and
    never leaves a broken cache. Several processes may fill one cache at once (they wait for each other's
    transactions). Given a name, the tokenizer is only started when some text is not in the
    cache: a warm cache reads back without Java (e.g. on a GPU machine that has none). Returns a list of token
    lists with a ``.stats`` attribute.
    """
    name, version = (tokenizer, tokenizer_version(tokenizer)) if isinstance(tokenizer, str) else \
        (tokenizer.name, tokenizer.version)
    started = time.perf_counter()
    texts = ["" if t is None else str(t) for t in texts]
    unique = list(dict.fromkeys(texts))
    key = f"{name}@{version}"
    found: dict[str, list[str]] = {}
    con = _open_cache(cache_dir) if cache_dir is not None else None
    try:
        if con is not None:
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = con.execute(
                    f"SELECT text, tokens FROM tokens WHERE tokenizer = ? AND text IN ({marks})", [key, *chunk]
                )
                found.update((text, json.loads(tokens)) for text, tokens in rows)
        hits = len(found)
        missing = [t for t in unique if t not in found]
        if missing and isinstance(tokenizer, str):
            tokenizer = get_tokenizer(tokenizer)
        if progress:
            from tqdm.auto import tqdm

            missing = tqdm(missing, desc=f"tokenizing ({name})", unit="text")
        pending = []
        for text in missing:
            found[text] = tokenizer(text)
            pending.append((key, text, json.dumps(found[text], ensure_ascii=False)))
            if con is not None and len(pending) >= _COMMIT_EVERY:
                _store_tokens(con, pending)
                pending = []
        if con is not None and pending:
            _store_tokens(con, pending)
    finally:
        if con is not None:
            con.close()
    result = Tokenized(list(found[t]) for t in texts)
    result.stats = TokenizeStats(
        tokenizer=key, texts=len(texts), unique=len(unique), hits=hits, misses=len(unique) - hits,
        tokens=sum(len(r) for r in result), seconds=time.perf_counter() - started,
    )
    return result


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary

SPECIALS = ("<pad>", "<unk>", "<start>", "<end>")
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3


class Vocab:
    """Token <-> id map with ``<pad>``=0, ``<unk>``=1, ``<start>``=2, ``<end>``=3, and the settings that made it."""

    def __init__(self, itos, freqs=None, settings=None, counts=None):
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        self.freqs = list(freqs) if freqs is not None else [0] * len(self.itos)
        self.settings = dict(settings or {})
        self.counts = dict(counts or {})

    @classmethod
    def build(cls, token_lists, min_freq: int = 5, max_size: int | None = None) -> "Vocab":
        """Keep tokens seen at least `min_freq` times, most frequent first (ties: by token), at most `max_size`
        of them (specials not counted). Pass the training split only."""
        counter = Counter()
        n_lists = 0
        for tokens in token_lists:
            counter.update(tokens)
            n_lists += 1
        for special in SPECIALS:
            counter.pop(special, None)
        kept = sorted((item for item in counter.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
        if max_size is not None:
            kept = kept[:max_size]
        n_tokens = sum(counter.values())
        counts = {
            "token_lists": n_lists, "tokens": n_tokens, "types": len(counter), "kept_types": len(kept),
            "kept_token_share": sum(f for _, f in kept) / n_tokens if n_tokens else 0.0,
        }
        return cls(
            list(SPECIALS) + [t for t, _ in kept], [0] * len(SPECIALS) + [f for _, f in kept],
            {"min_freq": min_freq, "max_size": max_size}, counts,
        )

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def encode(self, tokens, max_len: int | None = None) -> list[int]:
        """``<start>`` + ids of the first `max_len` tokens (unknown -> ``<unk>``) + ``<end>``."""
        tokens = list(tokens)[:max_len] if max_len is not None else tokens
        return [START_ID] + [self.stoi.get(t, UNK_ID) for t in tokens] + [END_ID]

    def decode(self, ids, keep_unk: bool = True) -> list[str]:
        """Tokens up to the first ``<end>``, without ``<pad>``/``<start>`` (and ``<unk>`` unless `keep_unk`)."""
        out = []
        for i in ids:
            i = int(i)
            if i == END_ID:
                break
            if i in (PAD_ID, START_ID) or (i == UNK_ID and not keep_unk):
                continue
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict:
        return {"format": "capkit.vocab/1", "settings": self.settings, "counts": self.counts,
                "itos": self.itos, "freqs": self.freqs}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        return cls(d["itos"], d.get("freqs"), d.get("settings"), d.get("counts"))

    def save(self, path, **settings) -> None:
        """Write JSON; `settings` (tokenizer, split, ...) are stored in the file with min_freq and max_size.

        The object itself is left as it was: saving is not part of what a vocabulary is."""
        d = self.to_dict()
        d["settings"] = {**d["settings"], **settings}
        store.write_json(path, d)

    def same_tokens(self, other: "Vocab") -> bool:
        """Whether both map the same tokens to the same ids (what a checkpoint's weights depend on)."""
        return self.itos == other.itos

    @classmethod
    def load(cls, path) -> "Vocab":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, settings={self.settings})"


def oov_rate(vocab: Vocab, token_lists) -> float:
    """Share of tokens in `token_lists` that the vocabulary does not hold (0.0 for no tokens)."""
    total = oov = 0
    for tokens in token_lists:
        total += len(tokens)
        oov += sum(1 for t in tokens if t not in vocab.stoi)
    return oov / total if total else 0.0
