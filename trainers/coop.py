"""CoOp (Zhou et al., IJCV 2022): learned context vectors in place of the hand-crafted template.

Classification: ``[SOT] ctx_1..ctx_M {class}. [EOT]`` with the class token at the end, middle or front
and shared or class-specific (CSC) context, as in upstream CoOp. Retrieval: the shared context is
prepended to each caption's tokens.
"""
from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY
from torch import nn

from .backbone.prompted_clip import PromptedCLIP
from .backbone.text_encoder import tokenize
from .bpe import count_bpe_tokens
from .engine.config import check_at_least, set_defaults
from .errors import ConfigError
from .engine.official_checkpoints import ConvertedCheckpoint, OfficialLayout, as_fp32, take
from .engine.trainer import CLIPTrainer

POSITIONS = ("end", "middle", "front")


def add_config(cfg) -> None:
    set_defaults(cfg, "TRAINER.COOP", {
        "N_CTX": 16,                    # number of context vectors
        "CSC": False,                   # class-specific context
        "CTX_INIT": "",                 # e.g. "a photo of a"; sets N_CTX to its word count
        "PREC": "fp16",                 # fp16 | bf16 | amp | fp32
        "CLASS_TOKEN_POSITION": "end",  # end | middle | front
    })


def init_context(text_encoder, n_ctx: int, ctx_init: str, num_classes: int = 0) -> nn.Parameter:
    """Context vectors from the word embeddings of ``ctx_init``, else N(0, 0.02²) (CoOp's init).

    The context gets one vector per BPE token of ``ctx_init``; upstream CoOp takes as many as the phrase has
    words and leaves a split word's remaining pieces as fixed tokens. The two agree whenever every word is one
    token, as in "a photo of a"."""
    if ctx_init:
        words = ctx_init.replace("_", " ").strip()
        tokens = tokenize([words]).tokens
        n_words = int(tokens.argmax()) - 1
        with torch.no_grad():
            emb = text_encoder.token_embedding(tokens.to(text_encoder.token_embedding.weight.device))[0, 1:1 + n_words]
        ctx = emb.float().clone()
        if num_classes:
            ctx = ctx.unsqueeze(0).repeat(num_classes, 1, 1)
        return nn.Parameter(ctx)
    shape = (num_classes, n_ctx, text_encoder.width) if num_classes else (n_ctx, text_encoder.width)
    return nn.Parameter(torch.randn(shape) * 0.02)


class CoOpCLIP(PromptedCLIP):
    learns_text = True

    def __init__(self, clip_model, classnames, n_ctx=16, ctx_init="", csc=False, position="end"):
        super().__init__(clip_model, classnames)
        if position not in POSITIONS:
            raise ConfigError(f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {POSITIONS}, got {position!r}")
        self.learnable = nn.Module()
        self.learnable.ctx = init_context(self.text_encoder, n_ctx, ctx_init, len(classnames) if csc else 0)
        self.num_text_ctx = self.learnable.ctx.shape[-2]
        self.position = position

    def text_context(self) -> torch.Tensor:
        return self.learnable.ctx

    def class_text_features(self, device):
        if self.position == "end":
            return super().class_text_features(device)
        return self._encode_with_class_token_inside(device)

    def _encode_with_class_token_inside(self, device):
        """Front/middle: ``[SOT] name ctx rest`` or ``[SOT] ctx[:M/2] name ctx[M/2:] rest``, as upstream CoOp.

        The name is the first ``len(BPE(name))`` tokens of ``"{name}."`` (CoOp's ``name_lens``), so a final "."
        that BPE merges with the name's last characters (``").``" in ``"crane (bird)."``) stays inside the name,
        and ``rest`` is what follows: "." (unless merged), EOT, padding."""
        tokens = self.tokenize(self.class_prompt_texts()).tokens.to(device)
        emb = self.text_encoder.token_embedding(tokens)
        ctx = self.learnable.ctx.to(emb.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(len(tokens), -1, -1)
        half = self.num_text_ctx // 2
        rows = []
        for i, name_len in enumerate(self.name_lengths):
            name, rest = emb[i, 1:1 + name_len], emb[i, 1 + name_len:]
            pieces = [emb[i, :1]]
            pieces += [name, ctx[i]] if self.position == "front" else [ctx[i, :half], name, ctx[i, half:]]
            rows.append(torch.cat(pieces + [rest]))
        x = torch.stack(rows)
        features = self.text_encoder(x, tokens.argmax(dim=-1) + self.num_text_ctx)
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @property
    def name_lengths(self) -> list[int]:
        return [count_bpe_tokens(name.replace("_", " ")) for name in self.classnames]


def official_text_context(state: dict, where: str) -> tuple[torch.Tensor, int]:
    """The context ``ctx`` of an official CoOp-style PromptLearner and its class count (from ``token_prefix``,
    the frozen SOT embeddings it saves beside ``ctx``; like ``token_suffix`` it is rebuilt from the class names)."""
    ctx = take(state, "ctx", where, (2, 3))
    return ctx, take(state, "token_prefix", where, 3).shape[0]


def from_official_coop(states) -> ConvertedCheckpoint:
    """KaiyangZhou/CoOp: ``prompt_learner/`` holds ``ctx`` ((n, D), or (C, n, D) with CSC), ``token_prefix``,
    ``token_suffix``."""
    ctx, num_classes = official_text_context(states["prompt_learner"], "prompt_learner (official CoOp)")
    classes = f"trained on {num_classes} classes"
    if ctx.dim() == 3:
        classes += " (class-specific context: evaluate on the same classes)"
    return ConvertedCheckpoint(
        {"prompt_learner": as_fp32({"ctx": ctx})},
        {"TRAINER.COOP.N_CTX": ctx.shape[-2], "TRAINER.COOP.CSC": ctx.dim() == 3, "TRAINER.COOP.CTX_INIT": ""},
        [classes, "TRAINER.COOP.CLASS_TOKEN_POSITION is not stored: use the official run's (its default: end)"])


@TRAINER_REGISTRY.register()
class CoOp(CLIPTrainer):
    CONFIG_NODE = "COOP"
    OFFICIAL_CHECKPOINT = OfficialLayout("coop", "KaiyangZhou/CoOp", ("prompt_learner",), from_official_coop)

    def build_prompted_clip(self, clip_model, classnames):
        c = self.method_cfg
        if self.is_retrieval and (c.CSC or c.CLASS_TOKEN_POSITION != "end"):
            raise ConfigError("CoOp on a caption dataset uses one shared context before each caption: set "
                             "TRAINER.COOP.CSC False and TRAINER.COOP.CLASS_TOKEN_POSITION end.")
        if not c.CTX_INIT:  # with CTX_INIT the context has one vector per token of the phrase
            check_at_least(self.cfg, "TRAINER.COOP.N_CTX", 1, "the number of learned context vectors")
        return CoOpCLIP(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.CSC, c.CLASS_TOKEN_POSITION)
