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
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer
from dassl.utils import count_num_param
from torch import nn
from tqdm import tqdm

from ..backbone.architecture import describe_architecture
from ..backbone.loading import load_clip
from ..backbone.precision import cast_clip_weights, check_precision_name, resolve_precision
from ..backbone.prompted_clip import PromptedCLIP
from ..losses import symmetric_info_nce
from .errors import ConfigError
from .evaluators import RETRIEVAL_EVALUATOR
from .feature_cache import ImageFeatureCache, cache_key
from .official_checkpoints import OfficialLayout
from .checkpoint import (CheckpointError, atomic_write_text, latest_checkpoint, load_checkpoint,
                         restore_rng_state, rng_state, save_checkpoint)
from .progress import EpochProgress
from .schedulers import build_lr_scheduler

RESULTS_FILE = "results.json"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class CLIPTrainer(TrainerX):
    #: the cfg.TRAINER.<node> holding this method's keys (PREC among them)
    CONFIG_NODE = "COOP"
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

    model: PromptedCLIP
    #: epochs of training behind the current weights: set after each epoch and by load_model
    weights_epoch: int = 0
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
        self.precision_setting(cfg)  # validates the name before anything is built

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

    def build_data_loader(self) -> None:
        super().build_data_loader()
        self.is_retrieval = bool(getattr(self.dm.dataset, "is_retrieval", False))
        name = type(self).__name__
        if self.is_retrieval and not self.SUPPORTS_RETRIEVAL:
            raise ConfigError(f"Trainer {name} does classification only; {self.cfg.DATASET.NAME} is a caption dataset.")
        if not self.is_retrieval and not self.SUPPORTS_CLASSIFICATION:
            raise ConfigError(f"Trainer {name} needs a caption dataset (e.g. configs/datasets/fdrd_pets.yaml); "
                             f"{self.cfg.DATASET.NAME} has none.")
        if self.is_retrieval and self.cfg.TEST.EVALUATOR != RETRIEVAL_EVALUATOR:
            # Dassl builds cfg.TEST.EVALUATOR right after the model: caption datasets are scored by Recall@K
            print(f"{self.cfg.DATASET.NAME} is a caption dataset: evaluated by Recall@K "
                  f"(TEST.EVALUATOR {RETRIEVAL_EVALUATOR}, not {self.cfg.TEST.EVALUATOR})")
            self.cfg.defrost()
            self.cfg.TEST.EVALUATOR = RETRIEVAL_EVALUATOR
            self.cfg.freeze()
        elif not self.is_retrieval and self.cfg.TEST.EVALUATOR == RETRIEVAL_EVALUATOR:
            raise ConfigError(f"TEST.EVALUATOR {RETRIEVAL_EVALUATOR} needs a caption dataset; "
                              f"{self.cfg.DATASET.NAME} is a classification dataset (use Classification).")

    def build_model(self) -> None:
        cfg = self.cfg
        name, key = self.precision_setting(cfg)
        if self.OFFICIAL_PREC_NODE:
            official = f"TRAINER.{self.OFFICIAL_PREC_NODE}.PREC"
            other = cfg.TRAINER[self.OFFICIAL_PREC_NODE].PREC
            print(f"Precision {name} from {key}" + (f" (it wins over {official}={other})" if key != official else ""))
        self.precision = resolve_precision(name, self.device)
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.CLIP_CACHE_DIR or None)
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
        size = self.cfg.TEST.TEXT_BATCH_SIZE
        chunks = [self.model.encode_text(tokens[i:i + size].to(self.device)).float().cpu()
                  for i in tqdm(range(0, len(tokens), size), desc="captions")]
        return torch.cat(chunks)

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
        }
        if self._models:  # what the learnable parts were trained on (NUM_SHOTS caps at a class's size)
            per_class = Counter(item.label for item in self.dm.dataset.train_x).values()
            meta["shots_per_class"] = {"min": min(per_class), "max": max(per_class)} if per_class else None
        if getattr(cfg.DATASET, "FDRD_DOMAIN", ""):
            meta["domain"] = cfg.DATASET.FDRD_DOMAIN
        path = Path(self.output_dir) / RESULTS_FILE
        atomic_write_text(path, json.dumps({**meta, **results}, indent=2) + "\n")
        print(f"Results written to {path}")

    # ---- checkpoints (weights_only-safe, atomic, resumable) -----------------------------------
    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = ""):
        for name in self.get_model_names():
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": self._optims[name].state_dict() if self._optims[name] else None,
                "scheduler": self._scheds[name].state_dict() if self._scheds[name] else None,
                "val_result": val_result,
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": rng_state(),
            }
            path = save_checkpoint(state, Path(directory) / name, model_name or f"model.pth.tar-{epoch + 1}")
            print(f"Checkpoint saved to {path}")

    def resume_model_if_exist(self, directory: str) -> int:
        names = self.get_model_names()
        paths = {name: latest_checkpoint(Path(directory) / name) for name in names}
        if not names or any(p is None for p in paths.values()):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name, path in paths.items():
            ckpt = load_checkpoint(path)
            self._models[name].load_state_dict(ckpt["state_dict"])
            if self._optims[name] is not None and ckpt.get("optimizer"):
                self._optims[name].load_state_dict(ckpt["optimizer"])
            if self._scheds[name] is not None and ckpt.get("scheduler"):
                self._scheds[name].load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            if ckpt.get("rng"):
                restore_rng_state(ckpt["rng"])
            start_epoch = ckpt["epoch"]
            print(f"Resumed {name} from {path} (epoch {start_epoch})")
        return start_epoch

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        filename = "model-best.pth.tar" if epoch is None or epoch < 0 else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = Path(directory) / name / filename
            if not path.is_file():
                raise CheckpointError(f"No model at {path}. Trained models are saved as "
                                      f"{Path(directory) / name}/model.pth.tar-<epoch>; check --load-epoch.")
            ckpt = load_checkpoint(path)
            ignored = lambda key: any(part in key for part in self.LOAD_IGNORE_KEYS)  # noqa: E731
            state = {k: v for k, v in ckpt["state_dict"].items() if not ignored(k)}
            try:
                missing, unexpected = self._models[name].load_state_dict(state, strict=False)
            except RuntimeError as err:  # a shape mismatch: another N_CTX, depth, width, ...
                raise CheckpointError(f"{path} does not fit {name}: {err}. Was it trained with the same config "
                                      "(N_CTX, depth, backbone, ...)?") from None
            missing = [k for k in missing if not ignored(k)]
            if missing or unexpected:
                raise CheckpointError(f"{path} does not fit {name}: missing {missing[:5]}, unexpected "
                                      f"{unexpected[:5]}. Was it trained with the same config (N_CTX, depth, ...)?")
            self.epoch = ckpt["epoch"] - 1
            self.weights_epoch = ckpt["epoch"]
            print(f"Loaded {path} into {name} (epoch {ckpt['epoch']})")

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
