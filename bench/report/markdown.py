"""The document as Markdown (GitHub's flavour): tables with pandas (tabulate), figures as links to ``figures/<name>.png``."""

from __future__ import annotations

from bench.report.document import Document, Figure, Table

FIGURES_DIR = "figures"
TABLES_DIR = "tables"


def escape_cells(table: Table):
    """Cells as strings with pipes and newlines made safe for a Markdown table."""
    return table.shown.astype(str).map(lambda s: s.replace("|", "\\|").replace("\n", " "))


def render(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for section in document.sections:
        lines += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += [f"*{block.caption}* ([CSV]({TABLES_DIR}/{block.name}.csv))", "",
                          escape_cells(block).to_markdown(index=False, tablefmt="github", disable_numparse=True), ""]
            elif isinstance(block, Figure):
                lines += [f"![{block.caption}]({FIGURES_DIR}/{block.name}.png)", "", f"*{block.caption}*", ""]
            else:
                lines += [block, ""]
    return "\n".join(lines)
