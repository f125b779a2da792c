"""Where every hyper-parameter of a run comes from: one table per method, written beside each run
as ``DIR/config.json`` and rendered into the docs from the same data (``python -m stylenas.docs_tables``).

A method's table maps each setting's name to an ``Entry``: the source of its default (a paper
section, an authors' file, or "StyleNAS choice: why"), the sources that replace it under some
presets, and, where StyleNAS differs from the paper or the authors' code, how (``deviation``) and
the switch that gives the paper's or code's value back (``restore``).

``DIR/config.json`` holds ``{"name": {"value": V, "source": S}}`` for every resolved value (one
level of nesting by component is allowed: ``{"controller": {"adam_betas": {"value": ..., "source":
...}}}``); a value the user set on the command line says so and keeps the default's source.
Any searcher or trainer (the conventional ones too) can write its own with ``sourced`` +
``write_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .io import dump_json

MISSING = "MISSING: no entry in this method's sources table (a bug: add one)"


def paper(where):
    return f"paper: {where}"


def code(where):
    return f"authors' code: {where}"


def choice(why):
    return f"StyleNAS choice: {why}"


@dataclass(frozen=True)
class Entry:
    source: str  # of the default value
    by_preset: dict = field(default_factory=dict)  # preset name -> source under that preset
    deviation: str | None = None  # how StyleNAS differs from the paper / authors' code, if it does
    restore: str | None = None  # the switch that gives the paper's / code's behaviour back

    def source_for(self, preset=None):
        return self.by_preset.get(preset, self.source)


def sourced(values, table, preset=None, from_command_line=None, forced=None):
    """``{name: {"value": v, "source": s}}`` for every item of ``values``: ``s`` from ``table`` (an
    Entry per name) under ``preset``; ``from_command_line`` ({name: option}) marks values the user
    gave; ``forced`` ({name: why}) marks values the run set itself (e.g. no reduced precision on the
    CPU). A name the table lacks gets ``MISSING`` (the tests refuse it)."""
    from_command_line, forced = from_command_line or {}, forced or {}
    record = {}
    for name, value in values.items():
        entry = table.get(name)
        source = entry.source_for(preset) if entry else MISSING
        if name in from_command_line:
            source = f"command line: {from_command_line[name]} (default: {source})"
        elif name in forced:
            source = f"{forced[name]} (default: {source})"
        record[name] = {"value": value, "source": source}
    return record


def write_config(path, record):
    """Write a run's ``config.json`` atomically; returns its text."""
    return dump_json(record, path)


def values_of(record):
    """The plain values of a config.json record (nested components kept as dicts)."""
    return {name: (item["value"] if "value" in item and "source" in item else values_of(item))
            for name, item in record.items()}


def markdown_table(table, presets=()):
    """The docs table of one method: every setting, its source, and where StyleNAS deviates from
    the paper or the authors' code, the switch that restores them. ``presets`` lists the presets
    whose own sources get a line."""
    def cell(text):
        return (text or "").replace("|", "\\|").replace("\n", " ")

    lines = ["| setting | source of the default | deviation from paper / authors' code | restore with |",
             "|---|---|---|---|"]
    for name, entry in table.items():
        source = cell(entry.source)
        for preset in presets:
            if preset in entry.by_preset:
                source += f"<br>`{preset}`: {cell(entry.by_preset[preset])}"
        lines.append(f"| `{name}` | {source} | {cell(entry.deviation) or '-'} | {cell(entry.restore) or '-'} |")
    return "\n".join(lines)
