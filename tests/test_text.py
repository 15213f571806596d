"""Text analysis shared by both stores: CJK bigrams and language detection."""

from __future__ import annotations

import pytest

from search.text import bm25_terms, cjk_bigrams, detect_language, has_cjk


def test_cjk_runs_become_overlapping_bigrams() -> None:
    assert bm25_terms("日本語の文書") == ["日本", "本語", "語の", "の文", "文書"]
    assert cjk_bigrams("猫") == ["猫"]


def test_mixed_script_words_are_split_at_script_changes() -> None:
    assert bm25_terms("Debianのパッケージ") == ["debian", "のパ", "パッ", "ッケ", "ケー", "ージ"]
    assert "dpkg" in bm25_terms("使用dpkg安装")


def test_fullwidth_and_case_are_folded() -> None:
    assert bm25_terms("ＡＰＴ Install") == ["apt", "install"]


def test_punctuation_only_gives_no_terms() -> None:
    assert bm25_terms("?!… — ***") == []
    assert not has_cjk("plain ascii")


@pytest.mark.parametrize(
    "text, lang",
    [
        ("How do I install a package on Debian?", "en"),
        ("Wie installiere ich ein Paket unter Debian?", "de"),
        ("Comment installer un paquet sous Debian ?", "fr"),
        ("Debian でパッケージをインストールするには？", "ja"),
        ("如何在 Debian 上安装软件包？", "zh"),
        ("데비안에서 패키지를 어떻게 설치합니까?", "ko"),
        ("Как установить пакет в Debian?", "ru"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_detect_language_falls_back_on_non_text() -> None:
    assert detect_language("", default="xx") == "xx"
    assert detect_language("12345 !!!", default="xx") == "xx"
