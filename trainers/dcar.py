"""DCAR (Wang et al., arXiv 2508.04028): dual prompt learning for downstream image-text retrieval.

Only what is DCAR-specific lives here; see ../shared/design/dcar.md for the sources and the open choices.
1. Dual prompts: text context and visual prompts generated from it ("semantic analysis guide
   generation"), i.e. MaPLe's coupling (:class:`CoupledPromptCLIP`), depth configurable
   (PROMPT_DEPTH 1 = the shallow reading of the figure); COUPLING "independent" learns the visual
   prompts separately, for the ablation.
2. Dynamic Token Re-Weighting (USE_DTR): w_j from |S(token_j, image) - S(token_j, blank)| under the
   frozen, unprompted CLIP multiplies the caption's token embeddings. Training only by default: test-time
   weights need the paired image (DTR_AT_TEST turns them on for analysis; it uses the ground-truth pairing).
3. Category-Aware Augmentation (USE_CAA): K negatives per positive (category swaps to siblings of the same
   meta-category, attribute swaps within the class), resampled every step; the frozen text features of
   positive and negatives pass the trainable CAA adapter into L_cate, whose logits are scaled by 1 + ALPHA
   for captions of the image's own category.
4. Loss: L = L_con (symmetric InfoNCE on the prompted features) + LAMBDA * L_cate.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .backbone.text_encoder import tokenize
from .backbone.vision_encoder import expand_prompts
from .dcar_components import (CategoryAwareAdapter, CategoryAwareNegatives, DynamicTokenReweighting,
                              blank_image_features, siblings_from_meta, siblings_from_text_features)
from .atomic_io import atomic_write_text
from .engine.config import set_defaults
from .errors import ConfigError
from .engine.trainer import CLIPTrainer
from .losses import category_weighted_contrastive, symmetric_info_nce
from .maple import CoupledPromptCLIP

COUPLINGS = ("linear", "independent")


class FrozenTextFeatureCache:
    """Frozen CLIP text features by caption string, least recently used evicted first.

    Generated negatives recur across epochs (a positive has a few dozen possible swaps), and the frozen
    encoder maps a string to the same feature every time, so each distinct string is encoded once."""

    def __init__(self, encode, max_entries: int = 50_000):
        self.encode = encode
        self.max_entries = max_entries
        self.features: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.features))
        if missing:
            for text, feature in zip(missing, self.encode(tokenize(missing).tokens)):
                self.features[text] = feature
        for text in texts:
            self.features.move_to_end(text)
        out = torch.stack([self.features[t] for t in texts])
        while len(self.features) > self.max_entries:
            self.features.popitem(last=False)
        return out


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.DCAR", {
        "N_CTX": 2,
        "CTX_INIT": "a photo of a",
        "PROMPT_DEPTH": 9,              # 1 = shallow prompts (the figure's literal reading)
        "COUPLING": "linear",           # linear (visual = F(text), MaPLe) | independent (ablation)
        "USE_DTR": True,
        "DTR_NORM": "mean",             # mean: words average 1 | none: raw |dS|
        "DTR_FLOOR": 0.5,
        "DTR_CEIL": 2.0,
        "DTR_AT_TEST": False,           # analysis only: uses the test pairing
        "USE_CAA": True,
        "NUM_CATEGORY_NEG": 2,          # K = NUM_CATEGORY_NEG + NUM_ATTRIBUTE_NEG
        "NUM_ATTRIBUTE_NEG": 2,
        "NEIGHBOURS": 10,               # siblings by CLIP text similarity when a domain has no hierarchy file
        "ALPHA": 0.5,                   # same-category weight 1 + ALPHA in L_cate
        "LAMBDA": 1.0,                  # weight of L_cate
        "CAA_RATIO": 0.2,
        "CAA_REDUCTION": 4,
        "TEMPERATURE": 0.0,             # 0: CLIP's own logit scale (1/100)
        "PREC": "fp16",
    })


class DualPromptCLIP(CoupledPromptCLIP):
    """MaPLe-coupled (or independent) dual prompts, plus the CAA adapter when L_cate is on."""

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, depth, coupling: str, caa: nn.Module | None):
        super().__init__(clip_model, classnames, n_ctx, ctx_init, depth)
        if coupling not in COUPLINGS:
            raise ConfigError(f"TRAINER.DCAR.COUPLING must be one of {COUPLINGS}, got {coupling!r}")
        self.coupling = coupling
        if coupling == "independent":
            del self.learnable.to_visual
            width = self.vision_encoder.width
            self.learnable.visual = nn.ParameterList(
                [nn.Parameter(torch.randn(n_ctx, width) * 0.02) for _ in range(depth)])
        if caa is not None:
            self.learnable.caa = caa

    def visual_prompts(self, images):
        if self.coupling == "linear":
            return super().visual_prompts(images)
        prompts = list(self.learnable.visual)
        return lambda block, hidden: (expand_prompts(prompts[block].to(hidden.dtype), hidden.shape[1])
                                      if block < self.depth else None)


@TRAINER_REGISTRY.register()
class DCAR(CLIPTrainer):
    CONFIG_NODE = "DCAR"
    SUPPORTS_CLASSIFICATION = False
    TRAINER_STATE = ("negatives._rng",)  # the negative sampler's own generator: part of every checkpoint

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        caa = None
        if c.USE_CAA:
            caa = CategoryAwareAdapter(clip_model.text_projection.shape[1], c.CAA_REDUCTION, c.CAA_RATIO)
        return DualPromptCLIP(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH, c.COUPLING, caa)

    def build_model(self) -> None:
        super().build_model()
        c = self.method_cfg
        clip = self.model.clip
        self.logit_scale = 1.0 / c.TEMPERATURE if c.TEMPERATURE > 0 else self.model.logit_scale
        self.token_reweighting = None
        if c.USE_DTR:
            self.token_reweighting = DynamicTokenReweighting(clip, c.DTR_NORM, c.DTR_FLOOR, c.DTR_CEIL)
            self.blank_features = blank_image_features(clip, image_size=self.cfg.INPUT.SIZE[0]).to(self.device)
        self.negatives = None
        if c.USE_CAA:
            self.negatives = self.build_negative_generator()
            self.frozen_positive_features = self.frozen_caption_features(self.caption_tokens_plain("train"))
            self.frozen_negative_features = FrozenTextFeatureCache(self.frozen_caption_features)
        print(f"DCAR parts: dual prompts ({c.COUPLING} coupling, depth {c.PROMPT_DEPTH}, {c.N_CTX} tokens); "
              f"DTR {'on' if c.USE_DTR else 'off'}; CAA {'on, K=' + str(self.negatives.num_negatives) if c.USE_CAA else 'off'}")

    # ---- Category-Aware Augmentation ----------------------------------------------------------
    def build_negative_generator(self) -> CategoryAwareNegatives:
        c = self.method_cfg
        classnames = self.model.classnames
        items = self.dm.dataset.train_x
        captions_by_class: dict[int, list[str]] = {}
        for item in items:
            captions_by_class.setdefault(item.label, []).append(item.caption)
        meta = getattr(self.dm.dataset, "meta_categories", None)
        if meta:
            siblings, source = siblings_from_meta(classnames, meta), "meta-category file"
        else:
            features = self.model.frozen_class_features(self.device)
            siblings = siblings_from_text_features(features, top_k=min(c.NEIGHBOURS, len(classnames) - 1))
            source = f"{c.NEIGHBOURS} nearest class names by CLIP text similarity"
        record = {"source": source, "siblings": {classnames[k]: [classnames[s] for s in v] for k, v in siblings.items()}}
        atomic_write_text(Path(self.output_dir) / "category_siblings.json", json.dumps(record, indent=1) + "\n")
        print(f"Category-aware negatives: siblings from {source}")
        return CategoryAwareNegatives(classnames, captions_by_class, siblings, c.NUM_CATEGORY_NEG,
                                      c.NUM_ATTRIBUTE_NEG, seed=max(self.cfg.SEED, 0))

    def caption_tokens_plain(self, split: str) -> torch.Tensor:
        items = self.dm.dataset.train_x if split == "train" else self.dm.dataset.test
        return tokenize([item.caption for item in items]).tokens

    def frozen_caption_features(self, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Frozen, unprompted CLIP text features (the input of the CAA adapter), normalised, in batches."""
        return torch.cat([self.model.frozen_text_features(tokens[i:i + batch_size].to(self.device))
                          for i in range(0, len(tokens), batch_size)])

    def category_loss(self, image_features: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor):
        """L_cate over each image's positive (candidate 0) and its freshly generated negatives."""
        items = self.dm.dataset.train_x
        k = self.negatives.num_negatives
        texts, owners, slots, same = [], [], [], torch.zeros(len(indices), k + 1, dtype=torch.bool)
        same[:, 0] = True
        for row, (index, label) in enumerate(zip(indices.tolist(), labels.tolist())):
            for slot, (text, neg_label, _kind) in enumerate(self.negatives.sample(items[index].caption, label), 1):
                texts.append(text)
                owners.append(row)
                slots.append(slot)
                same[row, slot] = neg_label == label
        candidates = self.frozen_positive_features.new_zeros(len(indices), k + 1, image_features.shape[1])
        candidates[:, 0] = self.frozen_positive_features[indices.to(self.device)]
        valid = torch.zeros_like(same)
        valid[:, 0] = True
        if texts:
            candidates[owners, slots] = self.frozen_negative_features(texts)
            valid[owners, slots] = True
        adapted = self.model.learnable.caa(candidates)
        return category_weighted_contrastive(image_features, adapted, same.to(self.device), self.method_cfg.ALPHA,
                                             self.logit_scale, valid.to(self.device))

    # ---- training ------------------------------------------------------------------------------
    def before_epoch(self) -> None:
        # Batched encoding makes a feature's last bits depend on its batch; a cache that outlived a checkpoint
        # would make a resumed run differ from an uninterrupted one, so it lives for one epoch.
        super().before_epoch()
        if self.negatives is not None:
            self.frozen_negative_features.features.clear()

    def token_weights(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor | None:
        if self.token_reweighting is None:
            return None
        # DTR scores the caption tokens; the prompt's context slots are not part of the caption
        return self.token_reweighting(tokens, self.model.frozen_image_features(images), self.blank_features)

    def compute_loss(self, batch: dict):
        images, tokens, labels = self.parse_retrieval_batch(batch)
        image_features = self.model.encode_image(images)
        text_features = self.model.encode_text(tokens, token_weights=self.token_weights(images, tokens))
        loss_con = symmetric_info_nce(image_features, text_features, self.logit_scale)
        summary = {"loss_con": loss_con.item()}
        loss = loss_con
        if self.negatives is not None:
            loss_cate = self.category_loss(image_features, batch["index"], labels)
            loss = loss + self.method_cfg.LAMBDA * loss_cate
            summary["loss_cate"] = loss_cate.item()
        summary["loss"] = loss.item()
        return loss, summary

    # ---- optional test-time re-weighting (analysis) ----------------------------------------------
    def encode_test_images(self, loader):
        features = super().encode_test_images(loader)
        if self.method_cfg.DTR_AT_TEST and self.token_reweighting is not None:
            self._test_frozen_images = self._encode_images(loader, self.model.frozen_image_features)
        return features


    def encode_test_captions(self, tokens: torch.Tensor) -> torch.Tensor:
        frozen = getattr(self, "_test_frozen_images", None)
        if frozen is None:
            return super().encode_test_captions(tokens)
        size, chunks = self.cfg.TEST.TEXT_BATCH_SIZE, []
        for i in range(0, len(tokens), size):
            part = tokens[i:i + size].to(self.device)
            weights = self.token_reweighting(part, frozen[i:i + size].to(self.device), self.blank_features)
            chunks.append(self.model.encode_text(part, token_weights=weights).float().cpu())
        return torch.cat(chunks)
