"""Load OpenAI CLIP weights from a name, a local file, or the Hugging Face Hub.

The download URLs baked into the ``clip`` package (openaipublic...) return 404 since October 2025
(openai/CLIP#516). The same OpenAI weights are published on the Hugging Face Hub by timm/OpenCLIP as
plain state dicts whose keys are OpenAI's, so ``clip.model.build_model`` loads them unchanged. We try,
in order: a local file, the cache dir (an OpenAI ``.pt`` placed there by hand or by an old ``clip.load``),
the Hub (honours ``HF_HUB_OFFLINE`` and the normal HF cache), and last the old URL.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: OpenAI model name -> Hugging Face Hub repository holding the same weights in OpenCLIP format.
HUB_REPOS: dict[str, str] = {
    "RN50": "timm/resnet50_clip.openai",
    "RN101": "timm/resnet101_clip.openai",
    "RN50x4": "timm/resnet50x4_clip.openai",
    "RN50x16": "timm/resnet50x16_clip.openai",
    "RN50x64": "timm/resnet50x64_clip.openai",
    "ViT-B/32": "timm/vit_base_patch32_clip_224.openai",
    "ViT-B/16": "timm/vit_base_patch16_clip_224.openai",
    "ViT-L/14": "timm/vit_large_patch14_clip_224.openai",
    "ViT-L/14@336px": "timm/vit_large_patch14_clip_336.openai",
}
HUB_FILENAME = "open_clip_pytorch_model.bin"
NETWORK_TIMEOUT_S = 20


class CLIPWeightsNotFoundError(FileNotFoundError):
    """No source could provide the requested CLIP weights."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLIP_CACHE_DIR", Path.home() / ".cache" / "clip")).expanduser()


def _openai_urls() -> dict[str, str]:
    import clip.clip

    return dict(clip.clip._MODELS)


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a TorchScript archive (OpenAI's .pt) or a plain state dict (weights_only)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            is_torchscript = any(name.endswith("constants.pkl") for name in archive.namelist())
        if is_torchscript:
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types
        raise ValueError(
            f"Cannot read CLIP checkpoint {path}: {err}. Expected an OpenAI TorchScript archive or a plain "
            "state dict (e.g. open_clip_pytorch_model.bin from the Hugging Face Hub)."
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(obj).__name__}).")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_clip(state_dict: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Build an fp32 CLIP on the CPU; the caller casts it to the run's precision."""
    from clip.model import build_model

    try:
        model = build_model(dict(state_dict)).float()
        # build_model stores the weights in fp16; reload so fp32 checkpoints keep their precision
        model.load_state_dict({k: v for k, v in state_dict.items()
                               if k not in ("input_resolution", "context_length", "vocab_size")})
    except (KeyError, RuntimeError, IndexError) as err:
        raise ValueError(f"{source} is not an OpenAI-CLIP state dict ({err}).") from err
    return model.eval()


def _from_hub(name: str, cache_dir: Path | None) -> Path:
    from huggingface_hub import hf_hub_download

    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(NETWORK_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(NETWORK_TIMEOUT_S))
    return Path(hf_hub_download(HUB_REPOS[name], HUB_FILENAME, cache_dir=str(cache_dir) if cache_dir else None))


def _from_openai_url(url: str, target: Path) -> Path:
    """The old OpenAI URL, with a timeout, sha256 check and an atomic write."""
    expected_sha = url.split("/")[-2]
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as response:
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected_sha:
                raise ValueError(f"checksum mismatch for {url}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return target


def resolve_clip_weights(name_or_path: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """Return (file, description of the source) for a model name or a path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path, "local file"
    urls = _openai_urls()
    if name_or_path not in urls:
        known = ", ".join(urls)
        raise CLIPWeightsNotFoundError(
            f"MODEL.BACKBONE.NAME={name_or_path!r} is neither an existing file nor a CLIP model name ({known})."
        )
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    openai_file = cache / os.path.basename(urls[name_or_path])
    if openai_file.is_file():
        return openai_file, "cache dir"
    tried = [f"{openai_file} (not present)"]
    try:
        return _from_hub(name_or_path, cache / "hub"), f"Hugging Face Hub {HUB_REPOS[name_or_path]}"
    except Exception as err:  # offline, missing package, HTTP errors: fall through to the next source
        tried.append(f"Hugging Face Hub {HUB_REPOS[name_or_path]}/{HUB_FILENAME} ({type(err).__name__}: {err})")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            return _from_openai_url(urls[name_or_path], openai_file), "OpenAI URL"
        except Exception as err:
            tried.append(f"{urls[name_or_path]} ({type(err).__name__}: {err})")
    raise CLIPWeightsNotFoundError(
        f"Could not obtain CLIP weights for {name_or_path!r}. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Fix: download {HUB_FILENAME} from https://huggingface.co/{HUB_REPOS[name_or_path]} and either set "
        f"MODEL.BACKBONE.NAME to its path, or place the OpenAI file as {openai_file}."
    )


def load_clip(name_or_path: str, cache_dir: str | Path | None = None) -> torch.nn.Module:
    """An fp32 OpenAI-architecture CLIP on the CPU, from a model name or a checkpoint path."""
    path, source = resolve_clip_weights(name_or_path, cache_dir)
    logger.info("Loading CLIP %s from %s (%s)", name_or_path, path, source)
    return build_clip(_state_dict_from_file(path), str(path))
