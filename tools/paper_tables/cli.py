"""``python -m tools.paper_tables KIND ROOT ...``: one subcommand per table kind, the shared options added here."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tools.results import collect

from . import ablation, base2new, dcar, dpt, transfer
from .kind import TableKind
from .published import SettingMismatchError
from .render import RENDERERS
from .selection import AmbiguousResultsError

#: the table kinds, one subcommand each
KINDS: tuple[TableKind, ...] = (
    dcar.KIND, dpt.KIND, ablation.KIND, base2new.KIND, transfer.CROSSDATASET, transfer.DG)

USAGE = """Lay aggregated results out like the papers' tables (DCAR retrieval, DPT few-shot, the generalisation
protocols) as Markdown, CSV or LaTeX.

    python -m tools.paper_tables dcar output/ --format md|csv|latex [--paper] [--methods ZeroshotCLIP CoOp DCAR]
    python -m tools.paper_tables dpt  output/ --format latex [--shots 1 2 4 8 16] [--out table.tex]
    python -m tools.paper_tables ablation output/fdrd_dtd/DCAR/vit_b32_16shots --std   # scripts/dcar/ablation.sh
    python -m tools.paper_tables base2new output/base2new [--task retrieval]       # scripts/<method>/base2new.sh
    python -m tools.paper_tables crossdataset output/ [--task retrieval]           # scripts/transfer/*.sh
    python -m tools.paper_tables dg output/                                        # scripts/dpt/dg.sh

Every cell is the mean over seeds; the average row is the plain mean over the datasets present, and the
notes say which datasets entered it and which runs (backbone, shots, epochs, recipe) fill each column.
With --paper (DCAR) each method gets the published number and ours − paper beside it, for runs of the
paper's setting only (CLIP ViT-B/32, 16 shots or the full training split); --paper-any-setting overrides
that, and the caption then says the setting differs.
"""


def build_parser(kinds: Sequence[TableKind] = KINDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.paper_tables", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="table", required=True)
    for kind in kinds:
        p = sub.add_parser(kind.name, help=kind.help, description=kind.help)
        p.add_argument("root", type=Path, help="output root to scan")
        p.add_argument("--format", choices=sorted(RENDERERS), default="md")
        p.add_argument("--methods", nargs="+", help="trainer or method names, in column order (default: all found)")
        p.add_argument("--shots", type=int, nargs="+",
                       help="shot counts to keep" if kind.shots_filter else "shot counts (the column groups)")
        p.add_argument("--backbone", help="keep runs of this backbone (ViT-B/32 or vit_b32)")
        p.add_argument("--cfg", help="keep runs of this config name (the part before _<N>shots)")
        p.add_argument("--variant", help="keep runs of this variant folder (e.g. nctx16_cscFalse_ctpend)")
        p.add_argument("--std", action="store_true", help="show the std over seeds next to each mean")
        p.add_argument("--decimals", type=int, default=2)
        p.add_argument("--out", type=Path, help="write here instead of stdout")
        kind.add_arguments(p)
        p.set_defaults(kind=kind)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 2
    summaries, failed = collect(args.root)
    try:
        table = args.kind.build(summaries, args)
    except (AmbiguousResultsError, SettingMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if table.is_empty():
        print(f"error: no {args.table} results under {args.root}", file=sys.stderr)
        return 1
    if failed:
        print(f"note: {len(failed)} failed run(s) left out; see python -m tools.parse_results {args.root}",
              file=sys.stderr)
    text = RENDERERS[args.format](table, args.decimals, args.std)
    if args.format == "csv" and table.notes:
        print("\n".join(table.notes), file=sys.stderr)  # CSV has no place for notes
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"Wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
