"""The rows of DCAR's ablation, derived from a recipe: ``scripts/dcar/ablation.sh`` runs each of them.

    python -m tools.dcar_ablation --config-file configs/trainers/DCAR/vit_b32.yaml [KEY VALUE ...]

prints one line per row, ``<name><TAB><KEY VALUE ...>`` (the overrides that turn the recipe into the row).
Rows follow from what the recipe switches on, so the ablation stays right when a default changes:

* ``full``: the recipe itself;
* each component removed from the full model when the recipe has it (``no_dtr``, ``no_cate``,
  ``no_visual_prompts``, ``shallow`` for deep prompts), or added to it when it has not (``plus_dtr``, ...);
* the build-up from plain dual prompts: ``prompts_only`` (the recipe's prompts, no DTR, no L_cate),
  ``dual_prompts`` and ``text_only`` (visual prompts on / off, no DTR, no L_cate), ``prompts_plus_dtr``,
  ``prompts_plus_cate``;
* with L_cate on, the literal readings of DCAR's Fig. 2 that docs/dcar.md measured: ``cate_frozen_encoder``
  (frozen text features + CAA head) and ``cate_figure_weighting`` (the positive's logit scaled by 1 + ALPHA); and
  ``cate_2cat_2attr``, negatives from both of the figure's perspectives (2 category + 2 attribute swaps, K = 4)
  where the recipe has fewer.

Rows that come out identical to an earlier one (e.g. ``no_cate`` and ``prompts_only`` when DTR is off) are
listed once, under the earlier name.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

NODE = "TRAINER.DCAR"
#: every row name :func:`ablation_rows` can produce, in table order
ROW_NAMES = ("full", "no_dtr", "plus_dtr", "no_cate", "plus_cate", "no_visual_prompts", "plus_visual_prompts",
             "shallow", "prompts_only", "dual_prompts", "text_only", "prompts_plus_dtr", "prompts_plus_cate",
             "cate_frozen_encoder", "cate_figure_weighting", "cate_2cat_2attr")


def recipe_values(config_file: str, overrides: Sequence[str] = ()) -> Mapping:
    """TRAINER.DCAR of the recipe: Dassl's defaults, every module's add_config, the file, then overrides."""
    from dassl.config import get_cfg_default

    from trainers.engine.config import extend_cfg

    cfg = extend_cfg(get_cfg_default())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    return cfg.TRAINER.DCAR


def ablation_rows(recipe: Mapping) -> list[tuple[str, dict[str, object]]]:
    """``[(name, {key: value})]`` in table order; keys are TRAINER.DCAR's, values differ from the recipe's."""
    deep = recipe["PROMPT_DEPTH"] > 1
    off = {"USE_DTR": False, "USE_CAA": False}
    candidates: list[tuple[str, dict[str, object]]] = [("full", {})]
    for name, key in (("dtr", "USE_DTR"), ("cate", "USE_CAA"), ("visual_prompts", "VISUAL_PROMPTS")):
        candidates.append((f"no_{name}" if recipe[key] else f"plus_{name}", {key: not recipe[key]}))
    if deep:
        candidates.append(("shallow", {"PROMPT_DEPTH": 1}))
    candidates += [
        ("prompts_only", dict(off)),
        ("dual_prompts", {**off, "VISUAL_PROMPTS": True}),
        ("text_only", {**off, "VISUAL_PROMPTS": False}),
        ("prompts_plus_dtr", {"USE_DTR": True, "USE_CAA": False}),
        ("prompts_plus_cate", {"USE_DTR": False, "USE_CAA": True}),
    ]
    if recipe["USE_CAA"]:
        candidates += [("cate_frozen_encoder", {"CATE_ENCODER": "frozen"}),
                       ("cate_figure_weighting", {"CATE_WEIGHTING": "figure"}),
                       ("cate_2cat_2attr", {"NUM_CATEGORY_NEG": 2, "NUM_ATTRIBUTE_NEG": 2})]
    rows, seen = [], set()
    for name, changes in candidates:
        effective = {k: v for k, v in changes.items() if recipe[k] != v}
        signature = tuple(sorted(effective.items()))
        if signature not in seen:
            seen.add(signature)
            rows.append((name, effective))
    return rows


def as_overrides(changes: Mapping[str, object]) -> list[str]:
    return [part for key, value in changes.items() for part in (f"{NODE}.{key}", str(value))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dcar_ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="the DCAR recipe the rows modify")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides applied to the recipe first")
    args = parser.parse_args(argv)
    if len(args.opts) % 2:
        parser.error(f"overrides must come in KEY VALUE pairs, got {args.opts}")
    try:
        recipe = recipe_values(args.config_file, args.opts)
    except (AssertionError, FileNotFoundError, KeyError, ValueError) as err:  # yacs asserts on unknown keys
        print(f"error: {args.config_file}: {err}", file=sys.stderr)
        return 2
    for name, changes in ablation_rows(recipe):
        print("\t".join([name, " ".join(as_overrides(changes))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
