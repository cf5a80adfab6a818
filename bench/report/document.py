"""The report as data: sections of paragraphs, tables and figures. The Markdown and HTML
writers render the same document, so the two never say different things."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Table:
    """A table as shown (``shown``: formatted, readable columns) and as saved (``data``: the
    record's numbers, with ``hardware_key`` and ``software`` on every row), as ``tables/<name>.csv``."""

    name: str
    caption: str
    shown: pd.DataFrame
    data: pd.DataFrame


@dataclass
class Figure:
    """A PNG plot, saved as ``figures/<name>.png``."""

    name: str
    caption: str
    png: bytes


Block = str | Table | Figure  # a str is a paragraph


@dataclass
class Section:
    title: str
    level: int = 2
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (hardware keys, run ids)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "x"


def make_names_unique(document: Document) -> None:
    """Give every table and figure its own file name (a second ``x`` becomes ``x-2``)."""
    for items in (document.tables(), document.figures()):
        seen: dict[str, int] = {}
        for item in items:
            count = seen.get(item.name, 0) + 1
            seen[item.name] = count
            if count > 1:
                item.name = f"{item.name}-{count}"
