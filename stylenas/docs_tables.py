"""Render the per-method sources tables (``stylenas.config_sources``) into the docs, so docs and
code cannot drift: ``python -m stylenas.docs_tables`` rewrites every table between its markers
(``<!-- table:NAME -->`` ... ``<!-- end table:NAME -->``) in docs/*.md; ``--check`` only reports
(exit 1) the tables that differ. A test runs the check.

A method joins by adding a line to ``TABLES``: its name, the module holding its ``TABLE`` (or
``"module:ATTRIBUTE"`` for a table under another name, e.g. beside a searcher's presets), and the
presets whose own sources the docs show.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import click

from .config_sources import markdown_table

# name -> (module with TABLE, or "module:ATTRIBUTE"; presets shown)
TABLES = {
    "stylegan2-search": ("stylenas.search.sources", ("tiny",)),
    "stylegan2-train": ("stylenas.train.sources", ("paper", "tiny")),
    "autogan-search": ("stylenas.conventional.searchers.autogan_sources:SOURCES", ("tiny",)),
    "autogan-train": ("stylenas.conventional.searchers.autogan_sources:RETRAIN_SOURCES", ("tiny",)),
    "agan-search": ("stylenas.conventional.searchers.agan:SOURCES", ("tiny",)),
    "agan-train": ("stylenas.conventional.searchers.agan:RETRAIN_SOURCES", ("tiny",)),
    "alphagan-conv-search": ("stylenas.conventional.searchers.alphagan:SOURCES", ("tiny",)),
    "alphagan-conv-train": ("stylenas.conventional.searchers.alphagan:RETRAIN_SOURCES", ("tiny",)),
    "degas-search": ("stylenas.conventional.searchers.degas:SOURCES", ("tiny",)),
    "degas-train": ("stylenas.conventional.searchers.degas:RETRAIN_SOURCES", ("tiny",)),
    "dggan-search": ("stylenas.conventional.searchers.dggan:SOURCES", ("small", "tiny")),
    "dggan-train": ("stylenas.conventional.searchers.dggan:RETRAIN_SOURCES", ("tiny",)),
}
DOCS = Path(__file__).resolve().parents[1] / "docs"


def generated(name):
    spec, presets = TABLES[name]
    module, _, attr = spec.partition(":")  # "module" (its TABLE) or "module:ATTRIBUTE"
    return markdown_table(getattr(importlib.import_module(module), attr or "TABLE"), presets)


def pattern(name):
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(.*?)(<!-- end table:{re.escape(name)} -->)", re.S)


def render(text):
    """``text`` with every known table between its markers replaced by the generated one; and the
    names of the tables found."""
    found = []
    for name in TABLES:
        if pattern(name).search(text):
            found.append(name)
            table = generated(name)
            text = pattern(name).sub(lambda match: match.group(1) + table + "\n" + match.group(3), text)
    return text, found


def update(docs=DOCS, check=False):
    """{file: [tables]} of the tables that were (check: would be) rewritten, and the tables found."""
    changed, found = {}, set()
    for path in sorted(Path(docs).glob("*.md")):
        text = path.read_text()
        new, names = render(text)
        found.update(names)
        if new != text:
            changed[str(path)] = names
            if not check:
                path.write_text(new)
    return changed, found


@click.command()
@click.option("--docs", type=click.Path(file_okay=False, exists=True), default=str(DOCS), show_default=True)
@click.option("--check", is_flag=True, help="Only report tables that differ from the code (exit 1).")
def main(docs, check):
    """Write the sources tables of every method into the docs (between their markers)."""
    changed, found = update(docs, check)
    missing = sorted(set(TABLES) - found)
    if missing:
        raise click.ClickException(f"{docs}: no markers for {', '.join(missing)} (<!-- table:NAME --> ... "
                                   f"<!-- end table:NAME -->)")
    for path, names in changed.items():
        click.echo(f"{path}: {', '.join(names)} {'differ from the code' if check else 'rewritten'}")
    if check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
