"""DCAR (Wang et al., arXiv 2508.04028): dual prompt learning for downstream image-text retrieval.

Only what is DCAR-specific lives here; docs/dcar.md gives the sources, every open choice and the measurement
behind each default.
1. Dual prompts: text context and visual prompts generated from it ("semantic analysis guide generation"),
   i.e. MaPLe's coupling (:class:`CoupledPromptCLIP`); PROMPT_DEPTH 1 is the shallow reading of the figure,
   COUPLING "independent" learns the visual prompts separately, VISUAL_PROMPTS False keeps the text side only.
2. Dynamic Token Re-Weighting (USE_DTR): w_j from |S(token_j, image) - S(token_j, blank)| under the frozen,
   unprompted CLIP, each token scored on its own, boilerplate shared by most captions neutral; the weights
   multiply the caption's token embeddings during training (test captions get weight 1: no pairing there).
3. Category-Aware Augmentation (USE_CAA): K negatives per positive (category swaps to siblings of the same
   meta-category, attribute swaps within the class; by default one category swap), resampled every step,
   encoded by the *prompted* text encoder (the one used at test) with gradient, optionally through the trainable
   CAA head, into L_cate; same-category negatives count (1 + ALPHA) times in its softmax denominator.
4. Loss: L = L_con (symmetric InfoNCE on the prompted features) + LAMBDA * L_cate.
The readings of Fig. 2 that measured degenerate stay available for the ablation: CATE_ENCODER "frozen" (frozen
text features + CAA head) and CATE_WEIGHTING "figure" (the positive's logit scaled by 1 + ALPHA too).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .backbone.text_encoder import tokenize
from .backbone.vision_encoder import expand_prompts
from .dcar_components import (CategoryAwareAdapter, CategoryAwareNegatives, DynamicTokenReweighting,
                              blank_image_features, boilerplate_token_ids, siblings_from_meta,
                              siblings_from_text_features)
from .atomic_io import atomic_write_text
from .engine.config import check_at_least, set_defaults
from .errors import ConfigError
from .engine.trainer import CLIPTrainer
from .losses import category_weighted_contrastive, symmetric_info_nce
from .maple import CoupledPromptCLIP

COUPLINGS = ("linear", "independent")
CATE_ENCODERS = ("prompted", "frozen")


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


@dataclass
class NegativeBatch:
    """One step's generated negatives: ``texts[i]`` is candidate ``slots[i]`` (1..K) of batch image ``owners[i]``;
    ``same`` [B, K+1] tells which candidates (slot 0 = the positive) name the image's own class."""

    texts: list[str]
    owners: torch.Tensor
    slots: torch.Tensor
    same: torch.Tensor


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.DCAR", {
        "N_CTX": 2,
        "CTX_INIT": "a photo of a",
        "PROMPT_DEPTH": 9,              # 1 = shallow prompts (the figure's literal reading)
        "VISUAL_PROMPTS": True,         # False: text prompts only (ablation)
        "COUPLING": "linear",           # linear (visual = F(text), MaPLe) | independent (ablation)
        "USE_DTR": False,               # measured to cost recall (docs/dcar.md); True: the paper's method
        "DTR_NORM": "mean",             # mean: scored tokens average 1 | none: raw |dS|
        "DTR_FLOOR": 0.5,
        "DTR_CEIL": 2.0,
        "DTR_BOILERPLATE": 0.5,         # tokens in at least this share of train captions keep weight 1
        "USE_CAA": True,
        # K = NUM_CATEGORY_NEG + NUM_ATTRIBUTE_NEG prompted passes per caption; one sibling swap matched 2 + 2 on
        # validation at 1.2-1.3x MaPLe's step instead of 2.2x (docs/dcar.md, "Negatives per caption")
        "NUM_CATEGORY_NEG": 1,
        "NUM_ATTRIBUTE_NEG": 0,
        "NEIGHBOURS": 10,               # siblings by CLIP text similarity when a domain has no hierarchy file
        "CATE_ENCODER": "prompted",     # prompted (test-time encoder, with gradient) | frozen (Fig. 2 literally)
        "CATE_WEIGHTING": "negatives",  # negatives: same-category negatives x(1+ALPHA) | figure: positive too
        "NEG_GRAD": True,               # back-propagate L_cate through the negatives' text features
        "CAA_HEAD": False,              # the trainable CAA block on L_cate's candidates (always on when frozen)
        "ALPHA": 0.5,
        "LAMBDA": 1.0,                  # weight of L_cate
        "CAA_RATIO": 0.2,
        "CAA_REDUCTION": 4,
        "TEMPERATURE": 0.0,             # 0: CLIP's own logit scale (1/100)
        "PREC": "fp16",
    })


class DualPromptCLIP(CoupledPromptCLIP):
    """MaPLe-coupled, independent or no visual prompts beside deep text prompts; the CAA head when L_cate uses it."""

    image_path_frozen = False  # per instance: True without visual prompts

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, depth, coupling: str, visual: bool,
                 caa: nn.Module | None):
        super().__init__(clip_model, classnames, n_ctx, ctx_init, depth)
        if coupling not in COUPLINGS:
            raise ConfigError(f"TRAINER.DCAR.COUPLING must be one of {COUPLINGS}, got {coupling!r}")
        self.coupling = coupling if visual else "none"
        self.image_path_frozen = not visual  # text prompts only: the frozen image features can be cached
        if not visual or coupling == "independent":
            del self.learnable.to_visual
        if visual and coupling == "independent":
            width = self.vision_encoder.width
            self.learnable.visual = nn.ParameterList(
                [nn.Parameter(torch.randn(n_ctx, width) * 0.02) for _ in range(depth)])
        if caa is not None:
            self.learnable.caa = caa

    def visual_prompts(self, images):
        if self.coupling == "none":
            return None
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

    def check_cfg(self, cfg) -> None:
        c = cfg.TRAINER.DCAR  # checked before the base builds the model with these values
        if c.CATE_ENCODER not in CATE_ENCODERS:
            raise ConfigError(f"TRAINER.DCAR.CATE_ENCODER must be one of {CATE_ENCODERS}, got {c.CATE_ENCODER!r}")
        if c.CATE_WEIGHTING not in ("negatives", "figure"):
            raise ConfigError(f"TRAINER.DCAR.CATE_WEIGHTING must be negatives or figure, got {c.CATE_WEIGHTING!r}")
        # the components' own checks (ValueError) would come after the dataset is built, as a traceback
        if c.DTR_NORM not in ("mean", "none"):
            raise ConfigError(f"TRAINER.DCAR.DTR_NORM must be mean or none, got {c.DTR_NORM!r}")
        if not 0.0 < c.DTR_FLOOR <= c.DTR_CEIL:
            raise ConfigError(f"TRAINER.DCAR.DTR_FLOOR and DTR_CEIL need 0 < DTR_FLOOR <= DTR_CEIL, got "
                              f"{c.DTR_FLOOR} and {c.DTR_CEIL}")
        check_at_least(cfg, "TRAINER.DCAR.N_CTX", 1, "prompt tokens per layer and modality")
        for key in ("NUM_CATEGORY_NEG", "NUM_ATTRIBUTE_NEG", "NEIGHBOURS", "LAMBDA", "TEMPERATURE"):
            if c[key] < 0:
                raise ConfigError(f"TRAINER.DCAR.{key} must be >= 0, got {c[key]}")
        super().check_cfg(cfg)

    @property
    def uses_caa_head(self) -> bool:
        c = self.method_cfg
        return bool(c.USE_CAA and (c.CAA_HEAD or c.CATE_ENCODER == "frozen"))

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        caa = None
        if self.uses_caa_head:
            caa = CategoryAwareAdapter(clip_model.text_projection.shape[1], c.CAA_REDUCTION, c.CAA_RATIO)
        return DualPromptCLIP(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH, c.COUPLING,
                              c.VISUAL_PROMPTS, caa)

    def build_model(self) -> None:
        super().build_model()
        c = self.method_cfg
        #: the scale of both losses (TEMPERATURE > 0 replaces CLIP's own; evaluation always uses CLIP's)
        self.loss_logit_scale = 1.0 / c.TEMPERATURE if c.TEMPERATURE > 0 else self.model.logit_scale
        self.token_reweighting = None
        if c.USE_DTR:
            blank = blank_image_features(self.model.clip, image_size=self.cfg.INPUT.SIZE[0]).to(self.device)
            self.token_reweighting = DynamicTokenReweighting(
                self.model.frozen_text_features, blank,
                boilerplate_token_ids(self.caption_tokens["train"], c.DTR_BOILERPLATE),
                c.DTR_NORM, c.DTR_FLOOR, c.DTR_CEIL)
        self.negatives = None
        if c.USE_CAA:
            self.negatives = self.build_negative_generator()
            if c.CATE_ENCODER == "frozen":
                texts = [item.caption for item in self.dm.dataset.train_x]
                self.frozen_positive_features = self.frozen_caption_features(tokenize(texts).tokens)
                self.frozen_negative_features = FrozenTextFeatureCache(self.frozen_caption_features)
        caa = (f"on, K={self.negatives.num_negatives}, {c.CATE_ENCODER} encoder"
               f"{', CAA head' if self.uses_caa_head else ''}") if c.USE_CAA else "off"
        print(f"DCAR parts: dual prompts ({self.model.coupling} visual prompts, depth {c.PROMPT_DEPTH}, "
              f"{c.N_CTX} tokens); DTR {'on' if c.USE_DTR else 'off'}; CAA {caa}")

    # ---- Category-Aware Augmentation ----------------------------------------------------------
    def build_negative_generator(self) -> CategoryAwareNegatives:
        c = self.method_cfg
        classnames = self.model.classnames
        captions_by_class: dict[int, list[str]] = {}
        for item in self.dm.dataset.train_x:
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

    def frozen_caption_features(self, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Frozen, unprompted CLIP text features (the input of the CAA head in the "frozen" reading), in batches."""
        return torch.cat([self.model.frozen_text_features(tokens[i:i + batch_size].to(self.device))
                          for i in range(0, len(tokens), batch_size)])

    def sample_negatives(self, indices: torch.Tensor, labels: torch.Tensor) -> NegativeBatch:
        """Fresh negatives of every image's caption (see :class:`NegativeBatch`)."""
        items = self.dm.dataset.train_x
        k = self.negatives.num_negatives
        texts, owners, slots = [], [], []
        same = torch.zeros(len(indices), k + 1, dtype=torch.bool)
        same[:, 0] = True
        for row, (index, label) in enumerate(zip(indices.tolist(), labels.tolist())):
            for slot, (text, neg_label, _kind) in enumerate(self.negatives.sample(items[index].caption, label), 1):
                texts.append(text)
                owners.append(row)
                slots.append(slot)
                same[row, slot] = neg_label == label
        return NegativeBatch(texts, torch.tensor(owners, dtype=torch.long), torch.tensor(slots, dtype=torch.long),
                             same)

    def category_loss(self, image_features: torch.Tensor, positive_features: torch.Tensor,
                      negative_features: torch.Tensor | None, negatives: NegativeBatch) -> torch.Tensor:
        """L_cate over each image's positive (candidate 0) and its negatives (the other filled slots)."""
        batch, k1 = negatives.same.shape
        candidates = positive_features.new_zeros(batch, k1, positive_features.shape[1])
        candidates[:, 0] = positive_features
        valid = torch.zeros_like(negatives.same)
        valid[:, 0] = True
        if negative_features is not None:
            candidates[negatives.owners, negatives.slots] = negative_features.to(candidates.dtype)
            valid[negatives.owners, negatives.slots] = True
        if self.uses_caa_head:
            candidates = self.model.learnable.caa(candidates)
        c = self.method_cfg
        return category_weighted_contrastive(image_features, candidates, negatives.same.to(self.device), c.ALPHA,
                                             self.loss_logit_scale, valid.to(self.device), c.CATE_WEIGHTING)

    # ---- training ------------------------------------------------------------------------------
    def before_epoch(self) -> None:
        # Batched encoding makes a feature's last bits depend on its batch; a cache that outlived a checkpoint
        # would make a resumed run differ from an uninterrupted one, so it lives for one epoch.
        super().before_epoch()
        cache = getattr(self, "frozen_negative_features", None)
        if cache is not None:
            cache.features.clear()

    def compute_loss(self, batch: dict):
        images, tokens, labels = self.parse_retrieval_batch(batch)
        batch_size = len(images)
        image_features = self.model.encode_image(images)
        negatives = self.sample_negatives(batch["index"], labels) if self.negatives is not None else None
        prompted_negatives = negatives is not None and negatives.texts and self.method_cfg.CATE_ENCODER == "prompted"
        image_of_text = torch.arange(batch_size)  # the image each encoded caption is paired with
        if prompted_negatives:  # one prompted pass over captions and negatives: the negatives train the test encoder
            tokens = torch.cat([tokens, self.model.tokenize(negatives.texts).tokens.to(self.device)])
            image_of_text = torch.cat([image_of_text, negatives.owners])
        weights = None
        if self.token_reweighting is not None:
            frozen_images = self.model.frozen_image_features(images)
            weights = self.token_reweighting(tokens, frozen_images[image_of_text.to(self.device)])
        if prompted_negatives and not self.method_cfg.NEG_GRAD:
            text_features = self.model.encode_text(tokens[:batch_size], None if weights is None else weights[:batch_size])
            with torch.no_grad():
                rest = self.model.encode_text(tokens[batch_size:], None if weights is None else weights[batch_size:])
            text_features = torch.cat([text_features, rest])
        else:
            text_features = self.model.encode_text(tokens, token_weights=weights)
        positive_features = text_features[:batch_size]
        loss_con = symmetric_info_nce(image_features, positive_features, self.loss_logit_scale)
        summary = {"loss_con": loss_con.item()}
        loss = loss_con
        if negatives is not None:
            negative_features = text_features[batch_size:] if prompted_negatives else None
            if self.method_cfg.CATE_ENCODER == "frozen":
                positive_features = self.frozen_positive_features[batch["index"].to(self.device)]
                negative_features = self.frozen_negative_features(negatives.texts) if negatives.texts else None
            loss_cate = self.category_loss(image_features, positive_features, negative_features, negatives)
            loss = loss + self.method_cfg.LAMBDA * loss_cate
            summary["loss_cate"] = loss_cate.item()
        summary["loss"] = loss.item()
        return loss, summary
