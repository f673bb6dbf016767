"""A tiny OpenAI-CLIP (ViT, 32 px, width 64), contrastively pretrained on the generic synthetic pool.

Why: prompt-learning code (CoOp, DPT, DCAR) needs a *pretrained* CLIP whose features already mean
something, or learned prompts have nothing to steer. A randomly initialised CLIP makes every test
and demo trivially at chance. This model pretrains in 1.5-3 minutes on two CPU cores (600 steps at
~0.15 s when the cores are free), yet it transfers zero-shot to the synthetic domain through
attribute words, while the domain's invented class names stay unknown to it.

The checkpoint is a plain ``state_dict`` in OpenAI's key layout, so ``clip.model.build_model`` (and
therefore the repository's normal CLIP loading path) infers exactly :data:`TINY_CLIP_ARCHITECTURE`
from it; heads are inferred as width // 64 = 1. A JSON sidecar records the recipe, the per-step loss
and the checkpoint's hash; a build is reused only when both match.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from tools.demo.files import json_bytes, read_json, sha256_of
from trainers.atomic_io import atomic_write_bytes
from trainers.backbone.text_encoder import PromptedTextEncoder
from trainers.losses import symmetric_info_nce
from trainers.serialization import atomic_torch_save
from tools.demo.generic_pool import generate_generic_pool, pool_fingerprint

TINY_CLIP_ARCHITECTURE: dict[str, int] = {
    "embed_dim": 64,
    "image_resolution": 32,
    "vision_layers": 2,
    "vision_width": 64,
    "vision_patch_size": 8,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 64,
    "transformer_heads": 1,
    "transformer_layers": 2,
}
# OpenAI CLIP's preprocessing constants: the downstream Dassl pipeline normalises with these.
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHTS_RELPATH = Path("weights") / "tiny_clip_synthetic.pt"
RECIPE_VERSION = 3  # bump when the training loop changes (pool changes are caught by pool_fingerprint)
PRETRAIN_THREADS = 2  # the target machine's cores; not part of the recipe (it does not change the result's meaning)
_MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips the learned temperature at 100


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the weights; the cache is keyed on it."""

    steps: int = 600
    batch_size: int = 256
    pool_size: int = 20_000
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1  # linear warm-up over this share of the steps, then cosine to zero
    seed: int = 0

    def as_record(self) -> dict:
        return {
            "version": RECIPE_VERSION,
            "architecture": TINY_CLIP_ARCHITECTURE,
            "pool_fingerprint": pool_fingerprint(),
            **asdict(self),
        }

    @property
    def warmup_steps(self) -> int:
        return max(1, round(self.steps * self.warmup_fraction))


@dataclass(frozen=True)
class PretrainResult:
    model: torch.nn.Module
    losses: list[float]
    seconds: float


@dataclass(frozen=True)
class TinyClipBuild:
    path: Path
    sidecar: Path
    built: bool  # False when a matching checkpoint was reused
    record: dict


def default_weights_path(data_root: Path | str) -> Path:
    return Path(data_root) / WEIGHTS_RELPATH


def sidecar_path(weights_path: Path) -> Path:
    return weights_path.with_suffix(".json")


def new_tiny_clip(seed: int = 0) -> torch.nn.Module:
    """A freshly initialised tiny CLIP (fp32), with CLIP's own initialisation."""
    import clip.model

    torch.manual_seed(seed)
    return clip.model.CLIP(**TINY_CLIP_ARCHITECTURE)


def images_to_clip_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) normalised like OpenAI CLIP's preprocess."""
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_PIXEL_STD).view(1, 3, 1, 1)
    return (tensor - mean) / std


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: CLIP exempts gains, biases and the temperature from weight decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or name == "logit_scale" else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def contrastive_loss(model: torch.nn.Module, text_encoder: PromptedTextEncoder, images: torch.Tensor,
                     tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's loss on one batch, with the library's pieces: the text tower through the project's text encoder
    (which runs only up to the batch's last end-of-text token, ~2x cheaper on these ~30-token captions, same
    features) and the project's symmetric InfoNCE at the model's learned temperature."""
    image_features = F.normalize(model.encode_image(images), dim=-1)
    text_features = F.normalize(text_encoder(*text_encoder.embed(tokens)), dim=-1)
    return symmetric_info_nce(image_features, text_features, model.logit_scale.exp())


def _epoch_batches(pool_size: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index batches, each drawn without replacement from a per-epoch permutation.

    No image appears twice in a batch, so InfoNCE never treats a pair as its own negative.
    """
    batch_size = min(batch_size, pool_size)
    order, cursor = torch.randperm(pool_size, generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > pool_size:
            order, cursor = torch.randperm(pool_size, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def _optimiser(model: torch.nn.Module, recipe: PretrainRecipe) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """AdamW with CLIP's betas/eps, linear warm-up then cosine decay to zero."""
    optimiser = torch.optim.AdamW(
        _parameter_groups(model, recipe.weight_decay), lr=recipe.learning_rate, betas=(0.9, 0.98), eps=1e-6
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: _warmup_cosine(step, recipe.warmup_steps, recipe.steps)
    )
    return optimiser, schedule


def pretrain_tiny_clip(
    recipe: PretrainRecipe = PretrainRecipe(), progress: bool = True, num_threads: int = PRETRAIN_THREADS
) -> PretrainResult:
    """Contrastive pretraining on a freshly drawn generic pool; deterministic for a recipe on one machine."""
    import clip

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng():  # leave the caller's global RNG untouched
            pool = generate_generic_pool(recipe.pool_size, recipe.seed, TINY_CLIP_ARCHITECTURE["image_resolution"])
            tokens = clip.tokenize(pool.captions, truncate=True)
            model = new_tiny_clip(recipe.seed).train()
            text_encoder = PromptedTextEncoder(model)
            optimiser, schedule = _optimiser(model, recipe)
            sampler = torch.Generator().manual_seed(recipe.seed)
            batches = _epoch_batches(recipe.pool_size, recipe.batch_size, recipe.steps, sampler)
            losses: list[float] = []
            bar = tqdm(batches, total=recipe.steps, desc="pretrain tiny CLIP", leave=False,
                       disable=None if progress else True)  # None: no bar when the output is not a terminal (CI logs)
            for batch in bar:
                loss = contrastive_loss(model, text_encoder, images_to_clip_tensor(pool.images[batch.numpy()]),
                                        tokens[batch])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0.0, _MAX_LOGIT_SCALE)
                losses.append(round(loss.item(), 5))
                bar.set_postfix(loss=f"{losses[-1]:.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    finally:
        torch.set_num_threads(previous_threads)
    return PretrainResult(model=model.eval(), losses=losses, seconds=time.perf_counter() - start)


def is_cached(weights_path: Path, recipe: PretrainRecipe) -> bool:
    """A checkpoint is reusable only if its sidecar has the same recipe and the file's hash matches."""
    record = read_json(sidecar_path(weights_path))
    if not record or not weights_path.is_file():
        return False
    same_recipe = record.get("recipe") == _json_form(recipe.as_record())
    return same_recipe and record.get("sha256") == sha256_of(weights_path.read_bytes())


def _json_form(payload: dict) -> dict:
    """The payload as the sidecar stores it (tuples become lists), so comparisons are like for like."""
    return json.loads(json.dumps(payload))


def ensure_tiny_clip(
    weights_path: Path | str,
    recipe: PretrainRecipe = PretrainRecipe(),
    progress: bool = True,
    num_threads: int = PRETRAIN_THREADS,
) -> TinyClipBuild:
    """Pretrain and save unless a matching checkpoint exists; writes are atomic (temp file + os.replace)."""
    weights_path = Path(weights_path)
    sidecar = sidecar_path(weights_path)
    if is_cached(weights_path, recipe):
        return TinyClipBuild(path=weights_path, sidecar=sidecar, built=False, record=read_json(sidecar) or {})
    result = pretrain_tiny_clip(recipe, progress=progress, num_threads=num_threads)
    state_dict = {key: value.detach().clone().float() for key, value in result.model.state_dict().items()}
    atomic_torch_save(state_dict, weights_path)
    record = {
        "recipe": _json_form(recipe.as_record()),
        "sha256": sha256_of(weights_path.read_bytes()),
        "seconds": round(result.seconds, 2),
        "final_logit_scale": round(result.model.logit_scale.exp().item(), 4),
        "torch_version": torch.__version__,
        "loss_per_step": result.losses,
    }
    atomic_write_bytes(sidecar, json_bytes(record))
    return TinyClipBuild(path=weights_path, sidecar=sidecar, built=True, record=record)


def load_tiny_clip(weights_path: Path | str) -> torch.nn.Module:
    """Load through ``clip.model.build_model`` (the path every consumer uses), then back to fp32 for CPU."""
    import clip.model

    state_dict = torch.load(Path(weights_path), map_location="cpu", weights_only=True)
    return clip.model.build_model(state_dict).float().eval()
