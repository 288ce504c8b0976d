"""The pages' words, in every language the interfaces speak.

Rules this module keeps:

* **One catalogue per language and interface**: ``locales/<language>/<part>.json``, flat
  ``key: text`` maps merged per language. English is complete; every other language has
  exactly the same keys (a unit test holds them to it), so no page shows a key.
* Texts are ``str.format`` templates with named fields; values are escaped by the template
  engine, never by the catalogue.
* The language comes from the session (set by the privacy-center link or the language
  switch), else the browser's ``Accept-Language``, else English.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

DEFAULT = "en"
NAMES = {"en": "English", "de": "Deutsch"}
LANGUAGES = tuple(NAMES)


@functools.cache
def catalogue(language: str) -> dict[str, str]:
    folder = resources.files("projections.web") / "locales" / language
    texts: dict[str, str] = {}
    for part in sorted(folder.iterdir(), key=lambda p: p.name):
        if part.name.endswith(".json"):
            texts.update(json.loads(part.read_text(encoding="utf-8")))
    return texts


def supported(language: str | None) -> str | None:
    return language if language in NAMES else None


def negotiate(accept_language: str | None) -> str:
    """The first supported language the browser asks for, by its quality values."""
    if not accept_language:
        return DEFAULT
    wanted: list[tuple[float, int, str]] = []
    for i, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        wanted.append((-quality, i, tag.strip().lower().split("-")[0]))
    for quality, _, tag in sorted(wanted):
        if quality < 0 and tag in NAMES:
            return tag
    return DEFAULT


class Translator:
    """``t("key", name=value)``: the text in this language, else English, else the key."""

    def __init__(self, language: str) -> None:
        self.language = supported(language) or DEFAULT
        self._texts = catalogue(self.language)
        self._fallback = catalogue(DEFAULT)

    def has(self, key: str) -> bool:
        return key in self._texts or key in self._fallback

    def __call__(self, key: str, /, **values: Any) -> str:
        text = self._texts.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text
