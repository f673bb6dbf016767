"""The field's evaluation protocols: base-to-new (CoCoOp), cross-dataset (ImageNet -> 10 datasets), domain
generalisation, and the same on FDRD retrieval (base-to-new over a domain's classes, cross-domain transfer).

Tables are checked on hand-written results.json trees against numbers computed here; the scripts' command lines
through a fake ``$PYTHON`` (test_scripts.py's), and one chain per task for real: the train.py calls a script
makes are replayed in this process, so a model trained on the base classes is evaluated on the new ones."""
from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from conftest import HAS_DASSL, TINY_OVERRIDES, build_trainer, count_correct, run_train
from fake_coop_data import make_split_dataset, write_image
from fake_fdrd import make_fake_fdrd
from test_scripts import option, run_script, work  # noqa: F401  (work: the fixture)

from datasets.coop_split import subsample_classes
from datasets.fdrd import CaptionDatum, subsample_caption_classes
from tools import paper_tables
from tools.paper_tables import Column
from tools.paper_tables.base2new import build_base2new_table, harmonic_mean
from tools.results import collect


# ------------------------------------------------------------------------------------------ class split


@pytest.mark.parametrize("split", [subsample_classes, subsample_caption_classes])
def test_base_is_the_first_half_of_the_sorted_labels_new_the_rest_both_relabelled(split, tmp_path):
    names = ["e", "a", "d", "b", "c"]  # label i is names[i]; 5 classes: base = labels 0,1,2 (ceil), new = 3,4
    image = str(write_image(tmp_path / "a.jpg"))  # Dassl's Datum wants an existing file
    train = [CaptionDatum(image, i, names[i], f"a photo of {names[i]} {k}") for i in (4, 2, 0, 3, 1) for k in range(2)]
    test = [CaptionDatum(image, i, names[i], f"test {names[i]}") for i in (3, 0, 4, 1, 2)]
    for half, kept in (("base", [0, 1, 2]), ("new", [3, 4])):
        new_train, new_test = split(train, test, subsample=half)
        for before, after in ((train, new_train), (test, new_test)):
            expected = [(kept.index(item.label), item.classname, item.caption) for item in before if item.label in kept]
            assert [(d.label, d.classname, d.caption) for d in after] == expected
    assert split(train, test, subsample="all") == (train, test)


# ---------------------------------------------------------------------------------------------- tables


def result(path: Path, **record) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"backbone": "ViT-B/16", "architecture": "ViT-B/16", **record}))


def base2new_tree(root: Path) -> Path:
    """CoOp on two datasets (2 seeds, trained on base), zero-shot CLIP on one; the training runs' own test (a
    made-up 1.0) must not be read."""
    b2n = root / "base2new"
    scores = {"oxford_pets": {"base": (90.0, 94.0), "new": (70.0, 74.0)},
              "dtd": {"base": (80.0, 80.0), "new": (40.0, 50.0)}}
    for dataset, halves in scores.items():
        name = {"oxford_pets": "OxfordPets", "dtd": "DescribableTextures"}[dataset]
        for seed in (1, 2):
            trained = b2n / "train_base" / dataset / "CoOp" / "vit_b16_16shots" / f"seed{seed}"
            common = dict(task="classification", trainer="CoOp", dataset=name, num_shots=16, seed=seed, epochs=5)
            result(trained, **common, subsample_classes="base", weights_from=None, accuracy=1.0)
            for half, values in halves.items():
                result(b2n / f"test_{half}" / dataset / "CoOp" / "vit_b16_16shots" / f"seed{seed}", **common,
                       subsample_classes=half, weights_from=f"output/base2new/train_base/{dataset}/CoOp/"
                                                            f"vit_b16_16shots/seed{seed}", accuracy=values[seed - 1])
    for half, value in (("base", 70.0), ("new", 75.0)):
        result(b2n / f"test_{half}" / "oxford_pets" / "ZeroshotCLIP" / "vit_b16_0shots" / "seed1",
               task="classification", trainer="ZeroshotCLIP", dataset="OxfordPets", num_shots=0, seed=1, epochs=0,
               subsample_classes=half, accuracy=value)
    return b2n


def test_harmonic_mean_by_hand():
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)  # 68.571...
    assert harmonic_mean(50.0, 50.0) == pytest.approx(50.0) and harmonic_mean(90.0, 0.0) == 0.0


def test_base2new_table_cells_averages_and_harmonic_means(tmp_path):
    summaries, _ = collect(base2new_tree(tmp_path))
    table = build_base2new_table(summaries)
    assert [c.group + " " + c.method for c in table.columns] == [
        "Base CLIP", "Base CoOp", "New CLIP", "New CoOp", "HM CLIP", "HM CoOp"]
    base, new, hm = (table.column_values("CoOp", group) for group in ("Base", "New", "HM"))
    assert base == {("OxfordPets",): 92.0, ("DTD",): 80.0, ("Average",): 86.0}  # never the training runs' 1.0
    assert new == {("OxfordPets",): 72.0, ("DTD",): 45.0, ("Average",): 58.5}
    assert hm[("OxfordPets",)] == pytest.approx(2 * 92 * 72 / (92 + 72))
    assert hm[("DTD",)] == pytest.approx(2 * 80 * 45 / 125)
    # the average's HM is the HM of the average base and new, not the mean of the two HMs
    assert hm[("Average",)] == pytest.approx(2 * 86 * 58.5 / (86 + 58.5))
    assert hm[("Average",)] != pytest.approx(statistics.fmean([hm[("OxfordPets",)], hm[("DTD",)]]))
    average = table.rows[-1].cells
    # the average's spread over seeds: seed 1 averages (90 + 80) / 2 = 85 and (70 + 40) / 2 = 55, seed 2 87 and 62
    assert [average[table.columns.index(Column(group, "CoOp"))].std for group in ("Base", "New", "HM")] == [
        pytest.approx(statistics.pstdev([85, 87])), pytest.approx(statistics.pstdev([55, 62])), None]
    assert table.column_values("CLIP", "HM") == {("OxfordPets",): pytest.approx(2 * 70 * 75 / 145),
                                                 ("Average",): pytest.approx(2 * 70 * 75 / 145)}


def test_base2new_renders_md_csv_latex_with_the_best_method_per_half_in_bold(tmp_path):
    root = base2new_tree(tmp_path)
    outputs = {}
    for fmt in ("md", "csv", "latex"):
        out = tmp_path / f"table.{fmt}"
        assert paper_tables.main(["base2new", str(root), "--format", fmt, "--std", "--out", str(out)]) == 0
        outputs[fmt] = out.read_text()
    pets = next(line for line in outputs["md"].splitlines() if line.startswith("| OxfordPets"))
    # Base: CoOp 92 > CLIP 70 (bold); New: CLIP 75 > CoOp 72 (bold); std over CoOp's two seeds shown
    assert "**92.00 ± 2.00**" in pets and "**75.00**" in pets and "72.00 ± 2.00" in pets
    assert outputs["csv"].splitlines()[0] == ("Dataset,Base CLIP,Base CLIP std,Base CoOp,Base CoOp std,New CLIP,"
                                              "New CLIP std,New CoOp,New CoOp std,HM CLIP,HM CLIP std,HM CoOp,"
                                              "HM CoOp std")
    assert "Average" in outputs["csv"] and r"\multicolumn{2}{c}{HM}" in outputs["latex"]


def test_base2new_refuses_halves_tested_from_different_training_runs(tmp_path, capsys):
    root = base2new_tree(tmp_path)
    path = root / "test_new" / "dtd" / "CoOp" / "vit_b16_16shots" / "seed1" / "results.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "weights_from": "output/elsewhere/dtd/CoOp/vit_b32_16shots/seed1"}))
    assert paper_tables.main(["base2new", str(root)]) == 2
    assert "both halves must test the same trained runs" in capsys.readouterr().err


def transfer_tree(root: Path) -> Path:
    """CoOp trained on ImageNet (2 seeds) evaluated on Caltech101, DTD and ImageNetV2; zero-shot CLIP everywhere;
    a CoOp few-shot run on DTD (trained there, not a transfer) that must stay out."""
    for seed, (source, caltech, dtd, v2) in enumerate([(70.0, 90.0, 40.0, 60.0), (72.0, 92.0, 44.0, 62.0)], 1):
        common = dict(task="classification", trainer="CoOp", num_shots=16, seed=seed, epochs=5,
                      subsample_classes="all")
        trained = f"output/imagenet/CoOp/vit_b16_16shots/seed{seed}"
        result(root / "imagenet/CoOp/vit_b16_16shots" / f"seed{seed}", **common, dataset="ImageNet", accuracy=source)
        for target, name, value in (("caltech101", "Caltech101", caltech), ("dtd", "DescribableTextures", dtd),
                                    ("imagenetv2", "ImageNetV2", v2)):
            result(root / "evaluation/CoOp/vit_b16_16shots" / target / f"seed{seed}", **common, dataset=name,
                   weights_from=trained, accuracy=value)
        result(root / "dtd/CoOp/vit_b16_16shots" / f"seed{seed}", **common, dataset="DescribableTextures",
               accuracy=99.0)
    for target, name, value in (("imagenet", "ImageNet", 66.0), ("caltech101", "Caltech101", 93.0),
                                ("dtd", "DescribableTextures", 45.0), ("imagenetv2", "ImageNetV2", 60.0)):
        result(root / target / "ZeroshotCLIP/vit_b16_0shots/seed1", task="classification", trainer="ZeroshotCLIP",
               dataset=name, num_shots=0, seed=1, epochs=0, subsample_classes="all", accuracy=value)
    return root


def test_cross_dataset_table_source_row_targets_and_target_average(tmp_path):
    root = transfer_tree(tmp_path / "output")
    out = tmp_path / "cross.csv"
    assert paper_tables.main(["crossdataset", str(root), "--format", "csv", "--out", str(out)]) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["Dataset", "from ImageNet CLIP", "from ImageNet CoOp"]
    assert rows[1:] == [["ImageNet", "66.00", "71.00"], ["Caltech101", "93.00", "91.00"], ["DTD", "45.00", "42.00"],
                        ["Average", f"{(93 + 45) / 2:.2f}", f"{(91 + 42) / 2:.2f}"]]  # targets only; not DTD's 99
    out = tmp_path / "dg.md"
    assert paper_tables.main(["dg", str(root), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| ImageNetV2 | 60.00" in text and "Caltech101" not in text.split("- ")[0]


# ------------------------------------------------------------------------------------ scripts (fake python)

def test_base2new_trains_on_base_then_tests_base_and_new_from_the_trained_model(work):  # noqa: F811
    # one method's script: all are one line on scripts/lib/base2new.sh (test_scripts.py runs each of them)
    dataset, trainer, seeds = "oxford_pets", "CoOp", ["1", "2"]
    proc, calls = run_script(work, "coop/base2new.sh", dataset, "OPTIM.MAX_EPOCH", "3", SEEDS=" ".join(seeds))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(calls) == 3 * len(seeds) and {option(c, "--trainer") for c in calls} == {trainer}
    train, tests = calls[:len(seeds)], calls[len(seeds):]
    cfg = Path(option(train[0], "--config-file")).stem
    for call in train:
        assert "--eval-only" not in call and option(call, "DATASET.SUBSAMPLE_CLASSES") == "base"
        assert option(call, "DATASET.NUM_SHOTS") == "16" and call[-2:] == ["OPTIM.MAX_EPOCH", "3"]
    assert [(option(c, "DATASET.SUBSAMPLE_CLASSES"), option(c, "--seed")) for c in tests] == [
        (half, seed) for half in ("base", "new") for seed in seeds]
    for call in tests:
        half, seed = option(call, "DATASET.SUBSAMPLE_CLASSES"), option(call, "--seed")
        run = f"{dataset}/{trainer}/{cfg}_16shots/seed{seed}"
        assert option(call, "--output-dir") == f"output/base2new/test_{half}/{run}"
        assert option(call, "--model-dir") == f"output/base2new/train_base/{run}"
        assert "--eval-only" in call and option(call, "--load-epoch") == "3" and call[-2:] == ["OPTIM.MAX_EPOCH", "3"]


def test_evaluating_models_that_were_not_trained_names_the_missing_run_and_starts_nothing(work):  # noqa: F811
    proc, calls = run_script(work, "lib/run_seeds.sh", "CoOp", "vit_b16", "oxford_pets", "16", TRAINED="output/none")
    assert proc.returncode == 1 and not calls
    assert ("oxford_pets (seed 1): no finished training run at output/none/oxford_pets/CoOp/vit_b16_16shots/seed1 "
            "(train it first)") in proc.stdout


def test_zero_shot_base2new_evaluates_both_halves_untrained(work):  # noqa: F811
    proc, calls = run_script(work, "zsclip/base2new.sh", "oxford_pets")
    assert proc.returncode == 0, proc.stderr
    assert [(option(c, "DATASET.SUBSAMPLE_CLASSES"), option(c, "--output-dir")) for c in calls] == [
        (half, f"output/base2new/test_{half}/oxford_pets/ZeroshotCLIP/vit_b16_0shots/seed1")
        for half in ("base", "new")]
    assert all("--eval-only" in c and "--model-dir" not in c and option(c, "DATASET.NUM_SHOTS") == "0" for c in calls)


def test_protocol_scripts_stop_at_a_bad_argument_with_one_message(work):  # noqa: F811
    proc, calls = run_script(work, "coop/base2new.sh", "oxford_pets", "DATASET.SUBSAMPLE_CLASSES", "all")
    assert proc.returncode == 2 and "sets DATASET.SUBSAMPLE_CLASSES itself" in proc.stderr and not calls
    for script, args in (("coop/base2new.sh", ["oxford_pets"]), ("transfer/cross_dataset.sh", ["CoOp"]),
                         ("transfer/cross_domain.sh", ["DCAR", "fdrd_dtd"])):
        proc, calls = run_script(work, script, *args, CFG="no_such_recipe")
        assert proc.returncode == 2 and not calls, script
        assert proc.stderr.count("error: no recipe") == 1, proc.stderr  # not once per target or half


def test_cross_dataset_trains_on_imagenet_and_evaluates_ten_datasets(work):  # noqa: F811
    proc, (train, *evaluations) = run_script(work, "transfer/cross_dataset.sh", "CoOp", "OPTIM.MAX_EPOCH", "2")
    assert proc.returncode == 0, proc.stderr
    assert option(train, "--output-dir") == "output/imagenet/CoOp/vit_b16_16shots/seed1"
    assert "--eval-only" not in train and option(train, "DATASET.NUM_SHOTS") == "16"
    targets = [Path(option(c, "--dataset-config-file")).stem for c in evaluations]
    assert targets == ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
                       "sun397", "dtd", "eurosat", "ucf101"]
    for call, target in zip(evaluations, targets):
        assert option(call, "--output-dir") == f"output/evaluation/CoOp/vit_b16_16shots/{target}/seed1"
        assert option(call, "--model-dir") == "output/imagenet/CoOp/vit_b16_16shots/seed1"
        assert "--eval-only" in call and option(call, "--load-epoch") == "2"


def test_cross_domain_trains_on_the_source_and_evaluates_the_other_domains(work):  # noqa: F811
    proc, (train, *evaluations) = run_script(work, "transfer/cross_domain.sh", "DCAR", "fdrd_dtd",
                                             "OPTIM.MAX_EPOCH", "2", FDRD_DOMAINS="fdrd_pets fdrd_dtd fdrd_ucf101")
    assert proc.returncode == 0, proc.stderr
    assert option(train, "--output-dir") == "output/fdrd_dtd/DCAR/vit_b32_16shots/seed1"
    assert [option(c, "--output-dir") for c in evaluations] == [
        f"output/cross_domain/fdrd_dtd/{target}/DCAR/vit_b32_16shots/seed1" for target in ("fdrd_pets", "fdrd_ucf101")]
    for call in evaluations:
        assert option(call, "--model-dir") == "output/fdrd_dtd/DCAR/vit_b32_16shots/seed1"
        assert "--eval-only" in call and option(call, "--load-epoch") == "2"
    proc, calls = run_script(work, "transfer/cross_domain.sh", "DCAR", "fdrd_dtd", FDRD_DOMAINS="fdrd_dtd")
    assert proc.returncode == 2 and "nothing to transfer to" in proc.stderr and not calls


# ---------------------------------------------------------------------------------- real runs (replayed)


def replay(calls: list[list[str]], work_dir: Path) -> None:
    """Run the train.py calls a script made (recorded by the fake python) for real, in this process."""
    shutil.rmtree(work_dir / "output")  # the fake's results.json files
    for call in calls:
        argv = [str(work_dir / a) if a.startswith("output/") else a for a in call[1:]]
        run_train(*argv)


def tiny(ckpt: Path, *extra: str) -> list[str]:
    return ["MODEL.BACKBONE.NAME", str(ckpt), *TINY_OVERRIDES, "OPTIM.MAX_EPOCH", "1", *extra]


@pytest.mark.dassl
@pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")
def test_coop_trained_on_base_classes_is_evaluated_on_the_new_class_names(
        work, tiny_clip_state_dict_path):  # noqa: F811
    classes = ["abyssinian", "beagle", "sphynx", "bengal", "boxer"]  # base: the first 3 labels, new: the last 2
    make_split_dataset(work / "data", "oxford_pets", "images", "split_zhou_OxfordPets.json", classes, counts=(2, 1, 2))
    proc, calls = run_script(work, "coop/base2new.sh", "oxford_pets", *tiny(tiny_clip_state_dict_path,
                             "TRAINER.COOP.N_CTX", "2", "TRAINER.COOP.PREC", "fp32", "OPTIM.LR", "0.5"),
                             DATA=str(work / "data"))
    assert proc.returncode == 0, proc.stderr
    replay(calls, work)
    group = "CoOp/vit_b16@tiny_clip_state_dict_16shots/seed1"
    new_run = work / "output/base2new/test_new/oxford_pets" / group
    record = json.loads((new_run / "results.json").read_text())
    trained = work / "output/base2new/train_base/oxford_pets" / group
    assert record["subsample_classes"] == "new" and Path(record["weights_from"]) == trained and record["epochs"] == 1

    new_call = [str(work / a) if a.startswith("output/") else a for a in calls[-1][1:]]
    trainer = build_trainer(*new_call)
    assert trainer.dm.dataset.classnames == ["bengal", "boxer"]
    assert sorted({d.label for d in trainer.dm.dataset.test}) == [0, 1]
    (name,) = trainer.get_model_names()
    initial = {k: v.clone() for k, v in trainer._models[name].state_dict().items()}
    trainer.load_model(str(trained), 1)
    saved = torch.load(trained / name / "model.pth.tar-1", weights_only=False)["state_dict"]
    loaded = trainer._models[name].state_dict()
    assert saved and all(torch.equal(loaded[k], v) for k, v in saved.items())  # the base-trained context ...
    assert any(not torch.equal(initial[k], v) for k, v in saved.items())      # ... which training moved
    correct, total = count_correct(trainer)
    assert total == 4 and record["accuracy"] == pytest.approx(100.0 * correct / total)

    out = work / "table.csv"
    assert paper_tables.main(["base2new", str(work / "output/base2new"), "--format", "csv", "--out", str(out)]) == 0
    base = json.loads((work / "output/base2new/test_base/oxford_pets" / group / "results.json").read_text())
    hm = harmonic_mean(base["accuracy"], record["accuracy"])
    assert out.read_text().splitlines()[1] == f"OxfordPets,{base['accuracy']:.2f},{record['accuracy']:.2f},{hm:.2f}"


@pytest.mark.dassl
@pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")
def test_dcar_base2new_on_fdrd_negatives_from_base_classes_only(work, tiny_clip_state_dict_path):  # noqa: F811
    made = make_fake_fdrd(work / "data", domain="dtd", classes=4, train_per_class=3, test_per_class=2)
    base_names, new_names = made["classnames"][:2], made["classnames"][2:]
    overrides = tiny(tiny_clip_state_dict_path, "TRAINER.DCAR.PROMPT_DEPTH", "2")
    proc, calls = run_script(work, "dcar/base2new.sh", "fdrd_dtd", *overrides, DATA=str(work / "data"))
    assert proc.returncode == 0, proc.stderr
    replay(calls, work)
    group = "DCAR/vit_b32@tiny_clip_state_dict_16shots/seed1"
    siblings = json.loads((work / "output/base2new/train_base/fdrd_dtd" / group / "category_siblings.json").read_text())
    assert set(siblings["siblings"]) == set(base_names)
    assert {s for others in siblings["siblings"].values() for s in others} <= set(base_names)

    trainer = build_trainer(*[str(work / a) if a.startswith("output/") else a for a in calls[0][1:]])
    assert trainer.model.classnames == base_names
    drawn = [text for item in trainer.dm.dataset.train_x for _ in range(20)
             for text, _label, kind in trainer.negatives.sample(item.caption, item.label) if kind == "category"]
    assert drawn and not any(name in text for text in drawn for name in new_names)
    assert {name for name in base_names if any(name in text for text in drawn)} == set(base_names)

    results = {half: json.loads((work / f"output/base2new/test_{half}/fdrd_dtd" / group / "results.json").read_text())
               for half in ("base", "new")}
    assert results["new"]["num_images"] == 2 * len(new_names) and results["new"]["subsample_classes"] == "new"
    out = work / "fdrd.csv"
    assert paper_tables.main(["base2new", str(work / "output/base2new"), "--task", "retrieval", "--format", "csv",
                              "--out", str(out)]) == 0
    b, n = results["base"]["mean_recall"], results["new"]["mean_recall"]
    assert out.read_text().splitlines()[1] == f"DTD,{b:.2f},{n:.2f},{harmonic_mean(b, n):.2f}"


@pytest.mark.dassl
@pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")
def test_dcar_trained_on_one_domain_is_evaluated_on_another_and_tabled(work, tiny_clip_state_dict_path):  # noqa: F811
    for domain, classes in (("dtd", 3), ("ucf101", 2)):
        make_fake_fdrd(work / "data", domain=domain, classes=classes, train_per_class=2, test_per_class=2)
    proc, calls = run_script(work, "transfer/cross_domain.sh", "DCAR", "fdrd_dtd",
                             *tiny(tiny_clip_state_dict_path, "TRAINER.DCAR.PROMPT_DEPTH", "2"),
                             DATA=str(work / "data"), FDRD_DOMAINS="fdrd_dtd fdrd_ucf101")
    assert proc.returncode == 0, proc.stderr
    replay(calls, work)
    group = "DCAR/vit_b32@tiny_clip_state_dict_16shots/seed1"
    source = json.loads((work / "output/fdrd_dtd" / group / "results.json").read_text())
    target = json.loads((work / "output/cross_domain/fdrd_dtd/fdrd_ucf101" / group / "results.json").read_text())
    assert target["domain"] == "ucf101" and Path(target["weights_from"]) == work / "output/fdrd_dtd" / group
    assert target["num_images"] == 4 and target["epochs"] == 1  # UCF's 2 classes x 2 test pairs, DTD's weights
    out = work / "cross.csv"
    assert paper_tables.main(["crossdataset", str(work / "output"), "--task", "retrieval", "--format", "csv",
                              "--out", str(out)]) == 0
    assert out.read_text().splitlines() == [
        "Dataset,from DTD DCAR", f"DTD,{source['mean_recall']:.2f}", f"UCF101,{target['mean_recall']:.2f}",
        f"Average,{target['mean_recall']:.2f}"]
