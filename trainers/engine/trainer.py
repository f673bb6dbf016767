"""The one Dassl trainer base every CLIP method inherits.

A method subclasses :class:`CLIPTrainer` and overrides only what differs:
- ``build_prompted_clip(clip_model, classnames)``: its :class:`PromptedCLIP` subclass (required);
- ``optimized_modules()``: the learnable modules, each with its optimiser config (default: one);
- ``compute_loss(batch)``: its loss (default: cross-entropy, or symmetric InfoNCE on caption datasets).

The task follows the dataset: classification datasets are evaluated by accuracy, caption datasets
(FDRD) by Recall@K, with the same trainer name, so CoOp-style scripts run both side by side.
"""
from __future__ import annotations

import datetime
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from dassl.data import DataManager
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer
from dassl.optim.optimizer import AVAI_OPTIMS
from dassl.utils import count_num_param
from torch import nn
from tqdm import tqdm

from ..backbone.architecture import describe_architecture
from ..atomic_io import atomic_write_text
from ..backbone.loading import load_clip
from ..backbone.precision import cast_clip_weights, check_precision_name, resolve_precision
from ..backbone.prompted_clip import PromptedCLIP
from ..errors import CheckpointError, ConfigError
from ..losses import symmetric_info_nce
from .evaluators import RETRIEVAL_EVALUATOR
from .feature_cache import ImageFeatureCache, cache_key
from .official_checkpoints import OfficialLayout
from .progress import EpochProgress
from ..serialization import atomic_torch_save
from .checkpoint import (COMMIT_FILE, STATE_DIR, Commit, capture_state, epoch_filename, is_random_generator,
                         legacy_commit, load_checkpoint, read_commit, restore_rng_state, restore_state, rng_state,
                         write_commit)
from .images import CheckedDatasetWrapper, verify_images
from .schedulers import build_lr_scheduler

RESULTS_FILE = "results.json"
FINAL_MODELS = ("last_step", "best_val")
TEST_SPLITS = ("val", "test")


def check_loop_cfg(cfg) -> None:
    """Values of the training loop and the loaders that Dassl or torch would reject only once data is loaded."""
    positive = {"DATALOADER.TRAIN_X.BATCH_SIZE": cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                "DATALOADER.TEST.BATCH_SIZE": cfg.DATALOADER.TEST.BATCH_SIZE}
    non_negative = {"OPTIM.MAX_EPOCH": cfg.OPTIM.MAX_EPOCH, "DATALOADER.NUM_WORKERS": cfg.DATALOADER.NUM_WORKERS,
                    "TRAIN.CHECKPOINT_FREQ": cfg.TRAIN.CHECKPOINT_FREQ}
    for key, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
    for key, value in non_negative.items():
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key} must be an integer >= 0, got {value!r}.")
    if cfg.TEST.FINAL_MODEL not in FINAL_MODELS:
        raise ConfigError(f"TEST.FINAL_MODEL must be one of {FINAL_MODELS}, got {cfg.TEST.FINAL_MODEL!r}.")
    if cfg.TEST.SPLIT not in TEST_SPLITS:  # Dassl evaluates any other value on the test split
        raise ConfigError(f"TEST.SPLIT must be one of {TEST_SPLITS}, got {cfg.TEST.SPLIT!r}.")


def check_optim_cfg(optim_cfg) -> None:
    """Build a throwaway optimiser and schedule from ``optim_cfg``: the same code, and errors, as the real ones."""
    if optim_cfg.NAME not in AVAI_OPTIMS:
        raise ConfigError(f"OPTIM.NAME must be one of {AVAI_OPTIMS}, got {optim_cfg.NAME!r}.")
    probe = nn.Linear(1, 1)
    try:
        optim = build_optimizer(probe, optim_cfg)
    except (ValueError, TypeError, NotImplementedError) as err:
        raise ConfigError(f"OPTIM: {err} (OPTIM.NAME is {optim_cfg.NAME!r}).") from None
    build_lr_scheduler(optim, optim_cfg)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class CLIPTrainer(TrainerX):
    #: the cfg.TRAINER.<node> holding this method's keys (PREC among them); every method names its own (no
    #: default: inheriting one would silently read another method's settings)
    CONFIG_NODE: str = ""
    #: the node whose PREC the method's official code reads, when that is not CONFIG_NODE (fanrena/DPT's VPT,
    #: VLP and DPT read TRAINER.COOP.PREC): then TRAINER.<CONFIG_NODE>.PREC defaults to "" and, left empty,
    #: defers to it; set, it wins
    OFFICIAL_PREC_NODE: str | None = None
    #: caption datasets (FDRD) are supported unless a method sets this False
    SUPPORTS_RETRIEVAL = True
    SUPPORTS_CLASSIFICATION = True
    #: substrings of checkpoint keys that --eval-only loading skips (weights unused at test whose shape
    #: depends on the training classes, e.g. DPT's auxiliary classifiers under domain generalisation)
    LOAD_IGNORE_KEYS: tuple[str, ...] = ()
    #: the layout of the checkpoints the method's official code writes (tools/import_checkpoint.py), if any
    OFFICIAL_CHECKPOINT: OfficialLayout | None = None
    #: dotted paths of trainer attributes whose state the registered modules do not hold (e.g. a sampler's own
    #: random generator): saved with every checkpoint and restored on resume, so that a resumed run equals an
    #: uninterrupted one. Random generators (Python, numpy, torch) or objects with state_dict()/load_state_dict();
    #: a path whose parent is None (a part switched off) is skipped.
    TRAINER_STATE: tuple[str, ...] = ()
    #: class names the model is built with in check_cfg, before the dataset exists
    PLACEHOLDER_CLASSNAMES = ("placeholder class a", "placeholder class b")

    model: PromptedCLIP
    #: epochs of training behind the current weights: set after each epoch and by load_model
    weights_epoch: int = 0
    #: the --model-dir the evaluated weights came from (None: trained here or nothing loaded); results.json
    #: records it, so a base-to-new or cross-dataset evaluation names the run it evaluates
    weights_from: str | None = None
    _progress: EpochProgress | None = None

    # ---- hooks -----------------------------------------------------------------------------------
    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.CONFIG_NODE]

    def build_prompted_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        raise NotImplementedError

    def optimized_modules(self) -> list[tuple[str, nn.Module, Any]]:
        """(name, module, optim cfg) per optimiser; the names are the checkpoint folders."""
        learnable = getattr(self.model, "learnable", None)
        if learnable is None or not any(p.requires_grad for p in learnable.parameters()):
            return []
        return [("prompt_learner", learnable, self.cfg.OPTIM)]

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if self.is_retrieval:
            images, tokens, _ = self.parse_retrieval_batch(batch)
            image_features = self.model.encode_image(images)
            text_features = self.model.encode_text(tokens)
            loss = symmetric_info_nce(image_features, text_features, self.model.logit_scale)
            return loss, {"loss": loss.item()}
        images, labels = self.parse_batch_train(batch)
        logits = self.model(images).float()
        loss = F.cross_entropy(logits, labels)
        return loss, {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}

    # ---- building ------------------------------------------------------------------------------
    def check_cfg(self, cfg) -> None:
        """What needs no data, before Dassl builds the dataset (it calls this first), so a typo costs seconds:
        config values, optimiser and schedule, the task, the backbone (loaded here, kept for build_model) and
        the method's model on it (built once with placeholder class names, on a forked RNG)."""
        self.cfg = cfg
        if not self.CONFIG_NODE:
            raise ConfigError(f"{type(self).__name__} sets no CONFIG_NODE: name the cfg.TRAINER node that holds its "
                              "keys (CONFIG_NODE = \"MYMETHOD\", declared by the module's add_config()).")
        if self.CONFIG_NODE not in cfg.TRAINER:
            raise ConfigError(f"{type(self).__name__} reads cfg.TRAINER.{self.CONFIG_NODE}, which no add_config() "
                              "declares.")
        self.precision_setting(cfg)  # validates the name before anything is built
        check_loop_cfg(cfg)
        check_optim_cfg(cfg.OPTIM)
        if cfg.DATASET.NAME not in DATASET_REGISTRY.registered_names():
            known = ", ".join(sorted(DATASET_REGISTRY.registered_names()))
            raise ConfigError(f"Unknown dataset DATASET.NAME={cfg.DATASET.NAME!r} (check --dataset-config-file). "
                              f"Available: {known}.")
        self.is_retrieval = bool(getattr(DATASET_REGISTRY.get(cfg.DATASET.NAME), "is_retrieval", False))
        self._check_task(cfg.DATASET.NAME)
        self._clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.CLIP_CACHE_DIR or None,
                                     bool(cfg.MODEL.ALLOW_UNSAFE_LOAD))
        resolution = getattr(self._clip_model.visual, "input_resolution", None)
        if resolution is not None and tuple(cfg.INPUT.SIZE) != (resolution, resolution):
            # the positional embeddings are made for this size: another one fails in the first forward pass
            raise ConfigError(f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not fit the backbone "
                              f"{cfg.MODEL.BACKBONE.NAME}, which takes {resolution}x{resolution} images: set "
                              f"INPUT.SIZE \"({resolution}, {resolution})\".")
        try:
            with torch.random.fork_rng(devices=[]):
                model = self.build_prompted_clip(self._clip_model, list(self.PLACEHOLDER_CLASSNAMES))
        except ConfigError as err:
            raise ConfigError(f"{type(self).__name__} on backbone {cfg.MODEL.BACKBONE.NAME}: {err} (the method's keys "
                              f"are under TRAINER.{self.CONFIG_NODE})") from None
        if cfg.RUN.EVAL_ONLY and not cfg.RUN.MODEL_DIR and any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"--eval-only: {type(self).__name__} has learnable parameters; pass --model-dir (the "
                              "--output-dir of its training run) and --load-epoch.")

    @classmethod
    def precision_setting(cls, cfg) -> tuple[str, str]:
        """(precision name, the key that set it): TRAINER.<CONFIG_NODE>.PREC, or, when that is empty, the key of
        the official code (OFFICIAL_PREC_NODE). A precision key of the official scripts is never ignored."""
        key = f"TRAINER.{cls.CONFIG_NODE}.PREC"
        name = cfg.TRAINER[cls.CONFIG_NODE].PREC
        if not name and cls.OFFICIAL_PREC_NODE:
            key, name = f"TRAINER.{cls.OFFICIAL_PREC_NODE}.PREC", cfg.TRAINER[cls.OFFICIAL_PREC_NODE].PREC
        try:
            return check_precision_name(name), key
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None

    def _check_task(self, dataset_name: str) -> None:
        name = type(self).__name__
        if self.is_retrieval and not self.SUPPORTS_RETRIEVAL:
            raise ConfigError(f"Trainer {name} does classification only; {dataset_name} is a caption dataset.")
        if not self.is_retrieval and not self.SUPPORTS_CLASSIFICATION:
            raise ConfigError(f"Trainer {name} needs a caption dataset (e.g. configs/datasets/fdrd_pets.yaml); "
                             f"{dataset_name} has none.")
        if self.is_retrieval and self.cfg.TEST.EVALUATOR != RETRIEVAL_EVALUATOR:
            # Dassl builds cfg.TEST.EVALUATOR right after the model: caption datasets are scored by Recall@K
            print(f"{dataset_name} is a caption dataset: evaluated by Recall@K "
                  f"(TEST.EVALUATOR {RETRIEVAL_EVALUATOR}, not {self.cfg.TEST.EVALUATOR})")
            self.cfg.defrost()
            self.cfg.TEST.EVALUATOR = RETRIEVAL_EVALUATOR
            self.cfg.freeze()
        elif not self.is_retrieval and self.cfg.TEST.EVALUATOR == RETRIEVAL_EVALUATOR:
            raise ConfigError(f"TEST.EVALUATOR {RETRIEVAL_EVALUATOR} needs a caption dataset; "
                              f"{dataset_name} is a classification dataset (use Classification).")

    def build_data_loader(self) -> None:
        """Dassl's DataManager, with images that fail to decode reported by file and split."""
        dm = DataManager(self.cfg, dataset_wrapper=CheckedDatasetWrapper)
        self.train_loader_x, self.train_loader_u = dm.train_loader_x, dm.train_loader_u
        self.val_loader, self.test_loader = dm.val_loader, dm.test_loader
        self.num_classes, self.num_source_domains, self.lab2cname = dm.num_classes, dm.num_source_domains, dm.lab2cname
        self.dm = dm
        for split, loader in (("train", dm.train_loader_x), ("val", dm.val_loader), ("test", dm.test_loader)):
            if loader is not None:
                loader.dataset.split = split
        dataset = dm.dataset
        self.is_retrieval = bool(getattr(dataset, "is_retrieval", False))
        self._check_task(self.cfg.DATASET.NAME)
        if self.cfg.DATASET.VERIFY_IMAGES:
            verify_images({"train": dataset.train_x, "val": dataset.val or [], "test": dataset.test})
        self._report_shots()

    def train_images_per_class(self) -> Counter:
        """Training items per label as actually used (after few-shot sampling and base/new subsetting)."""
        return Counter(item.label for item in self.dm.dataset.train_x)

    def _report_shots(self) -> None:
        shots = int(self.cfg.DATASET.NUM_SHOTS)
        counts = self.train_images_per_class()
        if shots < 1 or not counts:
            return
        short = sorted(label for label, n in counts.items() if n < shots)
        if short:
            print(f"DATASET.NUM_SHOTS is {shots}, but {len(short)} of {len(counts)} classes have fewer training "
                  f"images and use all of theirs (e.g. {self.lab2cname[short[0]]!r}: {counts[short[0]]}): "
                  f"{min(counts.values())} to {max(counts.values())} per class, "
                  f"{sum(counts.values())} in all")

    def build_model(self) -> None:
        cfg = self.cfg
        name, key = self.precision_setting(cfg)
        if self.OFFICIAL_PREC_NODE:
            official = f"TRAINER.{self.OFFICIAL_PREC_NODE}.PREC"
            other = cfg.TRAINER[self.OFFICIAL_PREC_NODE].PREC
            print(f"Precision {name} from {key}" + (f" (it wins over {official}={other})" if key != official else ""))
        self.precision = resolve_precision(name, self.device)
        clip_model = self.__dict__.pop("_clip_model", None)  # loaded by check_cfg
        if clip_model is None:
            clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.CLIP_CACHE_DIR or None, self._allow_unsafe)
        cast_clip_weights(clip_model, self.precision)
        classnames = [self.dm.lab2cname[i] for i in range(self.dm.num_classes)]
        print(f"Building {type(self).__name__} on CLIP {cfg.MODEL.BACKBONE.NAME} ({self.precision.name})")
        self.model = self.build_prompted_clip(clip_model, classnames).to(self.device)
        if self.is_retrieval:
            splits = ("train", "val", "test") if self.dm.dataset.val else ("train", "test")
            self.caption_tokens = {split: self._tokenize_split(split) for split in splits}
        self.scaler = self.precision.grad_scaler()
        for name, module, optim_cfg in self.optimized_modules():
            optim = build_optimizer(module, optim_cfg)
            self.register_model(name, module, optim, build_lr_scheduler(optim, optim_cfg))
            print(f"# learnable params in {name}: {count_num_param(module):,}")
        if not self._models:
            print("No learnable parameters: evaluation only")

    def split_items(self, split: str) -> list:
        """The dataset's items of ``split`` ("train" = train_x, "val", "test")."""
        dataset = self.dm.dataset
        return {"train": dataset.train_x, "val": dataset.val, "test": dataset.test}[split]

    def _tokenize_split(self, split: str) -> torch.Tensor:
        items = self.split_items(split)
        tokenized = self.model.tokenize([item.caption for item in items])
        if tokenized.num_truncated:
            print(f"{tokenized.num_truncated} of {len(items)} {split} captions exceed the text context "
                  f"({self.model.text_encoder.context_length} tokens incl. {self.model.num_text_ctx} context "
                  "vectors) and were truncated")
        return tokenized.tokens

    # ---- training step -------------------------------------------------------------------------
    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_retrieval_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, their captions' tokens (looked up by dataset index) and labels."""
        tokens = self.caption_tokens["train"][batch["index"]]
        return batch["img"].to(self.device), tokens.to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        if self._progress is None:
            self._progress = EpochProgress()
        self._progress.start_batch()
        with self.precision.autocast():
            loss, summary = self.compute_loss(batch)
        self.backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
            self.weights_epoch = self.epoch + 1
        line = self._progress.end_batch(self.epoch, self.num_batches, self.max_epoch, summary)
        if line:
            print(line)
        return summary

    def after_epoch(self) -> None:
        super().after_epoch()  # Dassl: validation, checkpoints
        if self._progress is not None:
            print(self._progress.end_epoch(self.epoch, self.max_epoch))

    def backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.detect_anomaly(loss)
        self.model_zero_grad(names)
        if self.scaler is None:
            loss.backward()
            self.model_update(names)
            return
        self.scaler.scale(loss).backward()
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(images).float()

    # ---- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        self.set_model_mode("eval")
        self.model.eval()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is None:
            if self.is_retrieval:  # Dassl would fall back to the test split: that would be tuning on test
                raise ConfigError(f"TEST.SPLIT val: {self.cfg.DATASET.NAME} has no validation split here; set "
                                  "DATASET.FDRD_VAL_PER_CLASS (pairs per class held out of train) to make one.")
            split = "test"
        with self.precision.autocast():
            results = self.test_retrieval(split) if self.is_retrieval else self.test_classification(split)
        self.write_metric_scalars(split, results)
        if split == self.cfg.TEST.SPLIT:
            self.write_results({"split": split, **results})
        return results["mean_recall"] if self.is_retrieval else results["accuracy"]

    def write_metric_scalars(self, split: str, results: dict[str, Any]) -> None:
        """Every reported metric to TensorBoard, per direction (``test/i2t/R@1``); counts are not metrics.

        Evaluation-only runs (zero-shot, --eval-only) get a writer of their own in <output>/tensorboard.
        """
        scalars = {}
        for key, value in results.items():
            if key.startswith("num_") or key.endswith("_coverage"):
                continue
            if isinstance(value, dict):
                scalars.update({f"{split}/{key}/{inner}": v for inner, v in value.items() if _is_number(v)})
            elif _is_number(value):
                scalars[f"{split}/{key}"] = value
        opened_here = self._writer is None
        if opened_here:
            self.init_writer(str(Path(self.output_dir) / "tensorboard"))
        for tag, value in scalars.items():
            self.write_scalar(tag, value, self.weights_epoch)
        if opened_here:
            self.close_writer()
            self._writer = None

    def test_classification(self, split: str) -> dict[str, Any]:
        self.evaluator.reset()
        loader = self.val_loader if split == "val" else self.test_loader
        print(f"Evaluate on the *{split}* set")
        if self.model.prompts_image or type(self).model_inference is not CLIPTrainer.model_inference:
            for batch in tqdm(loader):
                images, labels = self.parse_batch_test(batch)
                self.evaluator.process(self.model_inference(images), labels)
        else:  # the image path is frozen CLIP: encode once (or load from the cache), then score
            image_features = self.encode_test_images(loader).to(self.device)
            text_features = self.model.class_text_features(self.device)
            logits = self.model.logit_scale * image_features @ text_features.float().t()
            labels = torch.tensor([item.label for item in loader.dataset.data_source], device=self.device)
            self.evaluator.process(logits, labels)
        return {"task": "classification", **{k: float(v) for k, v in self.evaluator.evaluate().items()}}

    def encode_test_images(self, loader) -> torch.Tensor:
        """Normalised features of every image of ``loader``'s dataset, in dataset order."""
        if self.model.prompts_image or not self.cfg.TEST.FEATURE_CACHE:
            return self._encode_images(loader, self.model.encode_image)
        key = cache_key(self.cfg.MODEL.BACKBONE.NAME, repr(loader.dataset.transform), self.precision.name,
                        [item.impath for item in loader.dataset.data_source])
        raw, hit = ImageFeatureCache(self.cfg.TEST.FEATURE_CACHE_DIR).get_or_compute(
            key, lambda: self._encode_images(loader, self.model.raw_image_features))
        print(f"Frozen image features {'loaded from' if hit else 'written to'} the feature cache ({key})")
        return self.model.image_features_from_raw(raw.to(self.device)).float().cpu()

    def _encode_images(self, loader, encode) -> torch.Tensor:
        features: torch.Tensor | None = None
        for batch in tqdm(loader, desc="images"):
            out = encode(batch["img"].to(self.device)).float().cpu()
            if features is None:
                features = torch.empty(len(loader.dataset), out.shape[1])
            features[batch["index"]] = out
        return features

    def encode_captions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features of token rows, in their order; encoded shortest first, so that each batch of
        TEST.TEXT_BATCH_SIZE runs only as far as its own longest caption."""
        size = self.cfg.TEST.TEXT_BATCH_SIZE
        order = torch.argsort(tokens.argmax(dim=-1), stable=True)
        chunks = [self.model.encode_text(tokens[order[i:i + size]].to(self.device)).float().cpu()
                  for i in tqdm(range(0, len(tokens), size), desc="captions")]
        features = torch.cat(chunks)
        features[order] = features.clone()
        return features

    def encode_test_captions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The gallery captions (one per test image, same order); a hook for pairing-aware encoders."""
        return self.encode_captions(tokens)

    def test_retrieval(self, split: str) -> dict[str, Any]:
        from ..retrieval_metrics import hard_negative_recall

        print(f"Evaluate image-text retrieval on the *{split}* set")
        items = self.split_items(split)
        image_features = self.encode_test_images(self.val_loader if split == "val" else self.test_loader)
        text_features = self.encode_test_captions(self.caption_tokens[split])
        self.evaluator.reset()
        self.evaluator.process(image_features, text_features)
        results: dict[str, Any] = {
            "task": "retrieval",
            **self.evaluator.evaluate(),
            "num_images": len(items),
            "num_captions": len(items),
        }
        negatives = [[n for n in item.negatives if n != item.caption] for item in items]
        if any(negatives):
            flat = [n for group in negatives for n in group]
            neg_features = self.encode_captions(self.model.tokenize(flat).tokens)
            per_image, start = [], 0
            for group in negatives:
                per_image.append(neg_features[start:start + len(group)])
                start += len(group)
            hard = hard_negative_recall(image_features, text_features, per_image)
            results["hard_negative_i2t"] = {f"R@{k}": float(v) for k, v in hard["i2t"].items()}
            results["hard_negative_coverage"] = float(hard["with_negatives"])
        lines = ["=> result"]
        for direction in ("i2t", "t2i"):
            lines += [f"* {direction} {k}: {v:.2f}%" for k, v in results[direction].items()]
        lines.append(f"* mean_recall: {results['mean_recall']:.2f}%")
        for k, v in results.get("hard_negative_i2t", {}).items():
            lines.append(f"* hard_negative_i2t {k}: {v:.2f}%")
        print("\n".join(lines))
        return results

    def trained_epochs(self) -> int:
        """Epochs of training behind the weights being evaluated (0 without learnable parts)."""
        if not self._models:
            return 0
        return max(self.weights_epoch, self.start_epoch)  # start_epoch: a finished run resumed at its end

    def write_results(self, results: dict[str, Any]) -> None:
        """results.json: the metrics and what ran (the fields tools/results.py reads as METADATA_KEYS)."""
        cfg = self.cfg
        meta: dict[str, Any] = {
            "trainer": cfg.TRAINER.NAME,
            "dataset": cfg.DATASET.NAME,
            "backbone": cfg.MODEL.BACKBONE.NAME,
            "architecture": describe_architecture(self.model.clip),
            "num_shots": cfg.DATASET.NUM_SHOTS,
            "seed": cfg.SEED,
            "epochs": self.trained_epochs(),
            "max_epoch": cfg.OPTIM.MAX_EPOCH,
            "config_file": cfg.RUN.CONFIG_FILE,
            "dataset_config_file": cfg.RUN.DATASET_CONFIG_FILE,
            "overrides": list(cfg.RUN.OVERRIDES),
            "subsample_classes": cfg.DATASET.SUBSAMPLE_CLASSES,  # base-to-new: which half of the classes ran
            "weights_from": self.weights_from,
        }
        # what the learnable parts were trained on (NUM_SHOTS caps at a class's size); not known here for weights
        # loaded from another run (its own results.json says it)
        if self._models and self.weights_from is None:
            per_class = Counter(item.label for item in self.dm.dataset.train_x).values()
            meta["shots_per_class"] = {"min": min(per_class), "max": max(per_class)} if per_class else None
        if getattr(cfg.DATASET, "FDRD_DOMAIN", ""):
            meta["domain"] = cfg.DATASET.FDRD_DOMAIN
        path = Path(self.output_dir) / RESULTS_FILE
        atomic_write_text(path, json.dumps({**meta, **results}, indent=2) + "\n")
        print(f"Results written to {path}")

    # ---- checkpoints (one atomic unit, weights_only-safe, resumable; see checkpoint.py) ----------
    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = ""):
        """Every module's file, then (for a resume point) the run state, then the commit record."""
        names = self.get_model_names()
        if not names:
            return
        directory = Path(directory)
        filename = model_name or epoch_filename(epoch + 1)
        files: dict[str, Path] = {}
        for name in names:
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": self._optims[name].state_dict() if self._optims[name] else None,
                "scheduler": self._scheds[name].state_dict() if self._scheds[name] else None,
                "val_result": val_result,
            }
            files[name] = directory / name / filename
            atomic_torch_save(state, files[name])
        if model_name:  # model-best.pth.tar: for --eval-only / best_val deployment, not a resume point
            print(f"Saved {filename} of {', '.join(names)} (epoch {epoch + 1})")
            return
        files[STATE_DIR] = directory / STATE_DIR / filename
        atomic_torch_save(self.run_state(epoch + 1), files[STATE_DIR])
        write_commit(directory, epoch + 1, type(self).__name__, files)
        print(f"Checkpoint of epoch {epoch + 1} saved to {directory} ({', '.join(names)}; {COMMIT_FILE})")

    def run_state(self, epoch: int) -> dict[str, Any]:
        """What all modules share: RNG states, AMP scaler, best val result, the trainer-owned state."""
        self._warn_unsaved_generators()
        return {
            "epoch": epoch,
            "trainer": type(self).__name__,
            "rng": rng_state(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "best_result": float(self.best_result),
            "trainer_state": {path: capture_state(obj) for path, obj in self._trainer_state_objects().items()},
        }

    def _trainer_state_objects(self) -> dict[str, Any]:
        objects = {}
        for path in self.TRAINER_STATE:
            obj: Any = self
            for part in path.split("."):
                obj = getattr(obj, part) if obj is not None else None
            if obj is not None:
                objects[path] = obj
        return objects

    def unsaved_generators(self) -> list[str]:
        """Random generators among the trainer's attributes (and theirs) that TRAINER_STATE does not cover."""
        found = []
        for name, value in vars(self).items():
            if is_random_generator(value):
                found.append(name)
            elif not isinstance(value, (torch.Tensor, DataManager, dict, list, tuple)) and hasattr(value, "__dict__"):
                found += [f"{name}.{sub}" for sub, inner in vars(value).items() if is_random_generator(inner)]
        return [path for path in found if path not in self.TRAINER_STATE]

    def _warn_unsaved_generators(self) -> None:
        if getattr(self, "_checked_generators", False):
            return
        self._checked_generators = True
        unsaved = self.unsaved_generators()
        if unsaved:
            print(f"WARNING: random generator(s) {', '.join(unsaved)} not in checkpoints: a resumed run will differ "
                  f"from an uninterrupted one; add them to {type(self).__name__}.TRAINER_STATE.")

    def resume_model_if_exist(self, directory: str) -> int:
        names = self.get_model_names()
        if not names:
            return 0
        commit = read_commit(Path(directory)) or legacy_commit(Path(directory), names)
        if commit is None:
            if self.cfg.RESUME and Path(directory) == Path(self.cfg.RESUME):  # asked for, not found: not a fresh start
                raise CheckpointError(f"--resume {directory} holds no checkpoint ({COMMIT_FILE} of a run of "
                                      f"{type(self).__name__}); pass the --output-dir of that run, or drop --resume "
                                      "(a re-run into the same --output-dir resumes by itself).")
            print("No checkpoint found, train from scratch")
            return 0
        self._check_commit(commit, names)
        print(f"Found checkpoint of epoch {commit.epoch} at {directory} (will resume training)")
        checkpoints = {name: load_checkpoint(commit.files[name], self._allow_unsafe) for name in names}
        for name, ckpt in checkpoints.items():
            self._load_module_state(name, ckpt["state_dict"], commit.files[name])
            for what, holder in (("optimizer", self._optims[name]), ("scheduler", self._scheds[name])):
                if holder is not None and ckpt.get(what):
                    try:
                        holder.load_state_dict(ckpt[what])
                    except (ValueError, KeyError, RuntimeError) as err:
                        raise CheckpointError(f"The {what} state in {commit.files[name]} does not fit {name} "
                                              f"({err}); was it written with another OPTIM config?") from None
        if STATE_DIR in commit.files:
            self._restore_run_state(load_checkpoint(commit.files[STATE_DIR], self._allow_unsafe), commit)
        else:  # an older output folder: RNG and scaler states were stored in each module's file
            legacy = checkpoints[names[0]]
            if self.scaler is not None and legacy.get("scaler"):
                self.scaler.load_state_dict(legacy["scaler"])
            if legacy.get("rng"):
                restore_rng_state(legacy["rng"])
            if self.TRAINER_STATE:
                print(f"WARNING: {directory} predates trainer-state checkpoints; {', '.join(self.TRAINER_STATE)} "
                      "restart from their seed, so this resumed run will differ from an uninterrupted one")
        print(f"Resumed {', '.join(names)} from epoch {commit.epoch}")
        return commit.epoch

    def _check_commit(self, commit: Commit, names: list[str]) -> None:
        me = type(self).__name__
        fix = "use another --output-dir, or delete its checkpoint folders and " + COMMIT_FILE + " to start over"
        if commit.trainer and commit.trainer != me:
            raise CheckpointError(f"{commit.directory} holds a checkpoint of trainer {commit.trainer} (epoch "
                                  f"{commit.epoch}); this run is {me}: {fix}.")
        if sorted(commit.modules) != sorted(names):
            raise CheckpointError(f"{commit.directory} holds a checkpoint of modules {commit.modules}; {me} with this "
                                  f"config trains {names}: {fix}.")

    def _restore_run_state(self, state: dict[str, Any], commit: Commit) -> None:
        restore_rng_state(state["rng"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_result = state.get("best_result", self.best_result)
        saved = state.get("trainer_state", {})
        for path, obj in self._trainer_state_objects().items():
            if path not in saved:
                raise CheckpointError(f"{commit.files[STATE_DIR]} holds no state for {path} (written with another "
                                      "config?); resuming would not be exact. Use another --output-dir.")
            restore_state(obj, saved[path])

    @property
    def _allow_unsafe(self) -> bool:
        return bool(self.cfg.MODEL.ALLOW_UNSAFE_LOAD)

    def _load_module_state(self, name: str, state: dict[str, Any], path: Path, ignore: tuple[str, ...] = ()) -> None:
        """Load ``state`` into module ``name``; a missing, extra or differently shaped tensor is an error
        that names the tensor (and both shapes)."""
        module = self._models[name]
        own = module.state_dict()
        ignored = lambda key: any(part in key for part in ignore)  # noqa: E731
        state = {k: v for k, v in state.items() if not ignored(k)}
        missing = [k for k in own if k not in state and not ignored(k)]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise CheckpointError(f"{path} does not fit {name} of {type(self).__name__}: missing tensors {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}. Was it trained with another trainer or config "
                                  "(N_CTX, PROMPT_DEPTH, ...)?")
        for key, value in state.items():
            if hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape):
                raise CheckpointError(
                    f"{path} does not fit {name} of {type(self).__name__}: tensor {key!r} has shape "
                    f"{tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} in this model (another "
                    "class count, N_CTX, depth or backbone?).")
        module.load_state_dict(state, strict=False)

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        names = self.get_model_names()
        if not names:
            return
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"--model-dir {directory} does not exist (it should be the --output-dir of a "
                                  "training run).")
        me = type(self).__name__
        commit = read_commit(directory, verify=False)
        if commit is not None and commit.trainer and commit.trainer != me:
            raise CheckpointError(f"{directory} holds checkpoints of trainer {commit.trainer}, not {me}; check "
                                  "--model-dir and --trainer.")
        best = epoch is None or epoch < 0
        filename = "model-best.pth.tar" if best else epoch_filename(epoch)
        epochs = {}
        for name in names:
            path = directory / name / filename
            if not path.is_file():
                raise CheckpointError(self._missing_model_message(directory, name, filename, best))
            ckpt = load_checkpoint(path, self._allow_unsafe)
            self._load_module_state(name, ckpt["state_dict"], path, ignore=self.LOAD_IGNORE_KEYS)
            epochs[name] = ckpt["epoch"]
            self.epoch = ckpt["epoch"] - 1
            self.weights_epoch = ckpt["epoch"]
            print(f"Loaded {path} into {name} (epoch {ckpt['epoch']})")
        if directory.resolve() != Path(self.output_dir).resolve():  # not best_val's reload of this run's own
            self.weights_from = str(directory)
        if len(set(epochs.values())) > 1:
            raise CheckpointError(f"The {filename} files in {directory} come from different epochs ({epochs}): an "
                                  "interrupted save; evaluate a --load-epoch instead.")

    def _missing_model_message(self, directory: Path, name: str, filename: str, best: bool) -> str:
        modules = sorted(p.name for p in directory.iterdir() if p.is_dir() and any(p.glob("model*.pth.tar*")))
        if name not in modules:
            return (f"{directory} has no checkpoints of {name}, which {type(self).__name__} needs "
                    f"({', '.join(self.get_model_names())}); it holds {modules or 'none'}. Was it trained with another "
                    "trainer or config?")
        available = sorted(int(p.name.rsplit("-", 1)[1]) for p in (directory / name).glob("model.pth.tar-*")
                           if p.name.rsplit("-", 1)[1].isdigit())
        if best:
            return (f"No {directory / name / filename}: it is written only with TEST.FINAL_MODEL best_val. Pass "
                    f"--load-epoch (available: {available}).")
        return f"No {directory / name / filename}; available epochs: {available} (--load-epoch)."

    def before_train(self) -> None:
        super().before_train()  # resumes from the last committed checkpoint
        if self.max_epoch == 0:
            print("OPTIM.MAX_EPOCH is 0: nothing is trained; the model is evaluated as initialised")
        elif self.start_epoch >= self.max_epoch:
            print(f"Training already finished (epoch {self.start_epoch} of {self.max_epoch}); evaluating")

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        print(f"Elapsed: {datetime.timedelta(seconds=round(time.time() - self.time_start))}")
        self.close_writer()
