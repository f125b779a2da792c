"""``DIR/config.json`` of every conventional search and retraining run: each resolved setting with its
source, through the shared ``stylenas.config_sources`` (the same tables render docs/sources.md:
``python -m stylenas.docs_tables``).

Each method keeps its own sources table beside its presets (``searchers.autogan_sources.SOURCES``,
``searchers.agan.SOURCES``, ``searchers.alphagan.SOURCES``, ...; retraining: ``train.RETRAIN_SOURCES``
amended by the methods' ``RETRAIN_SOURCES``, which ``commands.retrain_sources`` hands to the trainer,
as this module sits below every other and names no method) and its command calls
``write_run_config`` with it. A table maps each setting's name to an ``Entry`` (flat names, e.g.
``ctrl_betas``, so that ``docs_tables`` renders it as is).
"""

from __future__ import annotations

from pathlib import Path

from ..config_sources import MISSING, sourced, write_config

__all__ = ["CONFIG_FILE", "OPERATIONAL", "TINY", "write_run_config", "unsourced", "with_changes"]

CONFIG_FILE = "config.json"
TINY = "StyleNAS choice: tiny preset, sized for CPU tests and make demo"
OPERATIONAL = "StyleNAS choice: bookkeeping, no effect on the result"


def write_run_config(outdir, values, table, preset=None, from_command_line=None, forced=None):
    """Write ``outdir/config.json`` (atomically) of a run's resolved ``values`` with their sources
    from ``table`` (``config_sources.sourced``: ``preset`` picks the preset's sources,
    ``from_command_line`` {name: option} and ``forced`` {name: why} mark values the user or the
    run set); returns the record."""
    record = sourced(values, table, preset, from_command_line, forced)
    Path(outdir).mkdir(parents=True, exist_ok=True)
    write_config(Path(outdir) / CONFIG_FILE, record)
    return record


def unsourced(record):
    """Names in a record whose source is missing or empty (the tests refuse any)."""
    return [name for name, item in record.items() if not str(item["source"]).strip() or MISSING in item["source"]]


def with_changes(table, **changes):
    """A copy of ``table`` with entries replaced or added (a method's table from a common one)."""
    return {**table, **changes}
