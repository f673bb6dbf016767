"""What a table kind provides to the command line: its options and a builder from the parsed arguments.

A new kind (e.g. an ablation table) is one module that defines ``KIND = TableKind(...)`` and one entry in
``cli.KINDS``; the command line adds the options every kind shares (root, format, filters, output).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Sequence

from tools.results import GroupSummary

from .model import PaperTable


@dataclass(frozen=True)
class TableKind:
    name: str  # the subcommand
    help: str
    #: adds the kind's own options (the shared ones are added by the CLI)
    add_arguments: Callable[[argparse.ArgumentParser], None]
    #: the table from every group found under the root and the parsed arguments
    build: Callable[[Sequence[GroupSummary], argparse.Namespace], PaperTable]
    #: whether --shots filters runs (True) or is the kind's own use of it (e.g. DPT's column groups)
    shots_filter: bool = True
