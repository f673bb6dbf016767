"""Paper tables: aggregated results laid out like the papers' tables, as Markdown, CSV or LaTeX.

    python -m tools.paper_tables dcar output/ --format md --paper --shots 16
    python -m tools.paper_tables dpt  output/ --format latex --shots 1 2 4 8 16 --out dpt.tex

Modules, each on the ones above it:
  names      the papers' method and dataset names and orders (one place, so tables and plots agree)
  selection  which result groups fill which cell; several candidates for one cell are an error
  model      the table model (columns, cells, rows, notes) and the notes every table shares
  published  published numbers, the setting they were measured in, and the guard that keeps them
             beside runs of that setting only
  render     the Markdown, CSV and LaTeX renderers
  kind       what a table kind gives the command line: its options and a builder
  dcar, dpt, ablation, base2new, transfer (crossdataset, dg)  the table kinds
  cli        the command line: the shared options and one subcommand per kind

Adding a table kind: a module like dpt.py ending in ``KIND = TableKind(name, help, add_arguments, build)``,
and its entry in ``cli.KINDS``.
"""
from .cli import main
from .base2new import build_base2new_table
from .dcar import build_dcar_table
from .dpt import build_dpt_table
from .model import Cell, Column, PaperTable, Row
from .published import PaperSetting, PublishedTable, SettingMismatchError, load_published_table
from .render import render_csv, render_latex, render_markdown
from .selection import AmbiguousResultsError, Selection
from .transfer import build_transfer_table

__all__ = [
    "AmbiguousResultsError", "Cell", "Column", "PaperSetting", "PaperTable", "PublishedTable", "Row", "Selection",
    "SettingMismatchError", "build_base2new_table", "build_dcar_table", "build_dpt_table", "build_transfer_table",
    "load_published_table", "main", "render_csv", "render_latex", "render_markdown",
]
