"""Numeric precision of a run: fp16 | bf16 | amp | fp32.

The frozen CLIP weights are stored in ``weight_dtype``; learnable parameters always stay fp32 (master
weights) and are cast where they enter CLIP, so tiny learning rates are not rounded away in fp16.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from ..errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp16", "bf16", "amp", "fp32")


@dataclass(frozen=True)
class Precision:
    name: str
    weight_dtype: torch.dtype
    device_type: str

    @property
    def uses_amp(self) -> bool:
        return self.name == "amp"

    def autocast(self):
        if self.uses_amp:
            return torch.autocast(self.device_type, dtype=torch.float16)
        return contextlib.nullcontext()

    def grad_scaler(self):
        """A GradScaler for AMP, None otherwise (bf16 has fp32's range and needs no loss scaling)."""
        if not self.uses_amp:
            return None
        if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
            return torch.amp.GradScaler(self.device_type)
        return torch.cuda.amp.GradScaler()


def check_precision_name(name: str) -> str:
    """``name`` in lower case, or a ConfigError naming the choices."""
    if name.lower() not in PRECISIONS:
        raise ConfigError(f"PREC must be one of {PRECISIONS}, got {name!r}.")
    return name.lower()


def resolve_precision(name: str, device: torch.device) -> Precision:
    name = check_precision_name(name)
    if device.type != "cuda" and name in ("fp16", "amp"):
        logger.warning("PREC=%s needs CUDA; running in fp32 on %s.", name, device.type)
        print(f"PREC={name} needs CUDA: falling back to fp32 on {device.type}")
        name = "fp32"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(name, torch.float32)
    return Precision(name, dtype, device.type)


def cast_clip_weights(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """Cast the frozen CLIP like OpenAI ships it: matmul weights in low precision, LayerNorms in fp32."""
    if precision.weight_dtype == torch.float32:
        return model.float()
    from clip.model import convert_weights

    model.float()
    convert_weights(model)  # -> fp16 for conv/linear/attention/projections
    if precision.weight_dtype == torch.bfloat16:
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dtype == torch.float16:
                tensor.data = tensor.data.to(torch.bfloat16)
    return model
