"""The three renderers of a :class:`PaperTable`: Markdown (tabulate), CSV and a booktabs LaTeX tabular."""
from __future__ import annotations

import csv
import io
from typing import Callable

from tabulate import tabulate

from .model import COUNT, DIFF, OURS, Cell, Column, PaperTable, Row

# ------------------------------------------------------------------------------------------- rendering


def _format_value(cell: Cell, column: Column, decimals: int) -> str:
    if column.kind == COUNT:
        return f"{cell.value:.0f}"
    return f"{cell.value:+.{decimals}f}" if column.kind == DIFF else f"{cell.value:.{decimals}f}"


def render_markdown(table: PaperTable, decimals: int = 2, show_std: bool = False) -> str:
    best = table.best_cells(decimals)
    headers = list(table.key_names) + [f"{c.group} {c.label}".strip() for c in table.columns]
    body = []
    for r, row in enumerate(table.rows):
        line = list(row.keys)
        for c, (column, cell) in enumerate(zip(table.columns, row.cells)):
            if cell is None:
                line.append("–")
                continue
            text = _format_value(cell, column, decimals)
            if show_std and cell.std is not None and column.kind in (OURS, DIFF):
                text += f" ± {cell.std:.{decimals}f}"
            line.append(f"**{text}**" if (r, c) in best else text)
        body.append(line)
    parts = [f"**{table.title}**", "", tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)]
    if table.notes:
        parts += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(parts) + "\n"


def render_csv(table: PaperTable, decimals: int = 2, show_std: bool = False) -> str:
    """Plain numbers (no bold); with ``show_std`` a ``<column> std`` column follows each of our columns (and each
    difference column that has a spread, e.g. an ablation's paired differences)."""
    with_std = [show_std and (column.kind == OURS or (column.kind == DIFF and any(
        row.cells[c] is not None and row.cells[c].std is not None for row in table.rows)))
        for c, column in enumerate(table.columns)]
    header = list(table.key_names)
    for column, std in zip(table.columns, with_std):
        name = f"{column.group} {column.label}".strip()
        if table.caveat and column.kind != OURS:  # CSV has no caption: the columns it concerns say it
            name += f" [{table.caveat}]"
        header.append(name)
        if std:
            header.append(f"{name} std")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line = list(row.keys)
        for column, cell, std in zip(table.columns, row.cells, with_std):
            line.append(_format_value(cell, column, decimals) if cell is not None else "")
            if std:
                line.append(f"{cell.std:.{decimals}f}" if cell is not None and cell.std is not None else "")
        writer.writerow(line)
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$",
                  "−": "--", "–": "--", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def render_latex(table: PaperTable, decimals: int = 2, show_std: bool = False) -> str:
    """A booktabs ``tabular``: grouped headers with cmidrules, the best of our methods in bold, notes as comments."""
    best = table.best_cells(decimals)
    n_keys = len(table.key_names)
    lines = [f"% {latex_escape(table.title)}"] + [f"% {note}" for note in table.notes]
    lines += [r"% requires \usepackage{booktabs}", rf"\begin{{tabular}}{{{'l' * n_keys}{'c' * len(table.columns)}}}"]
    lines.append(r"\toprule")

    spans: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based over the whole row
    for c, column in enumerate(table.columns, start=n_keys + 1):
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1], c)
        else:
            spans.append((column.group, c, c))
    if any(group for group, _, _ in spans):
        header = [""] * n_keys + [
            rf"\multicolumn{{{last - first + 1}}}{{c}}{{{latex_escape(group)}}}" for group, first, last in spans
        ]
        lines.append(" & ".join(header) + r" \\")
        lines.append(" ".join(rf"\cmidrule(lr){{{first}-{last}}}" for group, first, last in spans if group))
    names = list(table.key_names) + [column.label for column in table.columns]
    lines.append(" & ".join(latex_escape(name) for name in names) + r" \\")
    lines.append(r"\midrule")

    previous: Row | None = None
    for r, row in enumerate(table.rows):
        new_block = previous is not None and (
            row.is_average != previous.is_average or (n_keys > 1 and row.keys[0] != previous.keys[0])
        )
        if new_block:
            lines.append(r"\midrule")
        keys = [latex_escape(key) for key in row.keys]
        if n_keys > 1 and previous is not None and not new_block:
            keys[0] = ""  # the dataset name heads its block once, as in the papers
        cells = []
        for c, (column, cell) in enumerate(zip(table.columns, row.cells)):
            if cell is None:
                cells.append("--")
                continue
            text = _format_value(cell, column, decimals)
            text = rf"\textbf{{{text}}}" if (r, c) in best else text
            if show_std and cell.std is not None and column.kind in (OURS, DIFF):
                text += rf"$_{{\pm {cell.std:.{decimals}f}}}$"
            cells.append(text)
        lines.append(" & ".join(keys + cells) + r" \\")
        previous = row
    lines.append(r"\bottomrule")
    if table.caveat:  # the comments above never reach the PDF: the warning goes under the table itself
        n_columns = n_keys + len(table.columns)
        lines.append(rf"\multicolumn{{{n_columns}}}{{l}}{{\footnotesize {latex_escape(table.caveat)}}} \\")
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[PaperTable, int, bool], str]] = {
    "md": render_markdown,
    "csv": render_csv,
    "latex": render_latex,
}
