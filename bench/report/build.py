"""Write a report into its output folder so that a crash never leaves half of one.

Everything (CSV tables, PNG figures, ``REPORT.md``, ``report.html``) is rendered into a
staging folder inside the output folder first; only then is each piece moved into place
by rename (``figures/`` and ``tables/`` as whole folders, then the two documents). A crash
while rendering leaves the previous report as it was; other files in the output folder
(``reports/README.md``) are never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.report import html, markdown
from bench.report.document import Document, make_names_unique
from bench.report.loading import Results
from bench.report.sections import build_document

REPORT_MD = "REPORT.md"
REPORT_HTML = "report.html"


@dataclass
class Written:
    markdown: Path
    html: Path
    tables: list[Path]
    figures: list[Path]


def render_into(document: Document, folder: Path) -> None:
    (folder / markdown.FIGURES_DIR).mkdir()
    (folder / markdown.TABLES_DIR).mkdir()
    for fig in document.figures():
        (folder / markdown.FIGURES_DIR / f"{fig.name}.png").write_bytes(fig.png)
    for table in document.tables():
        table.data.to_csv(folder / markdown.TABLES_DIR / f"{table.name}.csv", index=False)
    (folder / REPORT_MD).write_text(markdown.render(document), encoding="utf-8")
    (folder / REPORT_HTML).write_text(html.render(document), encoding="utf-8")


def move_into_place(staging: Path, out: Path) -> None:
    for name in (markdown.FIGURES_DIR, markdown.TABLES_DIR):
        target = out / name
        if target.exists():
            target.rename(staging / f"previous-{name}")  # removed with the staging folder
        (staging / name).rename(target)
    for name in (REPORT_MD, REPORT_HTML):
        os.replace(staging / name, out / name)


def write_report(results: Results, out: str | Path) -> Written:
    """Render the report of ``results`` and move it into ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    document = build_document(results)
    make_names_unique(document)
    staging = Path(tempfile.mkdtemp(prefix=".report-staging-", dir=out))
    try:
        render_into(document, staging)
        move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Written(out / REPORT_MD, out / REPORT_HTML,
                   [out / markdown.TABLES_DIR / f"{t.name}.csv" for t in document.tables()],
                   [out / markdown.FIGURES_DIR / f"{f.name}.png" for f in document.figures()])
