"""Load OpenAI CLIP weights from a name, a local file, or the Hugging Face Hub.

The download URLs baked into the ``clip`` package (openaipublic...) return 404 since October 2025
(openai/CLIP#516). The same OpenAI weights are published on the Hugging Face Hub by timm/OpenCLIP as
plain state dicts whose keys are OpenAI's, so ``clip.model.build_model`` loads them unchanged. We try,
in order: a local file, the cache dir (an OpenAI ``.pt`` placed there by hand or by an old ``clip.load``),
the Hub (honours ``HF_HUB_OFFLINE`` and the normal HF cache), and last the old URL. Without network the
network sources are skipped after a short reachability probe (no retry loop), so a typo or an offline node
fails in seconds with every source tried and the file to put where.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from ..atomic_io import atomic_write
from ..errors import BackboneError
from ..serialization import is_torchscript_archive, load_torch_file, load_torchscript_state_dict

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
PROBE_TIMEOUT_S = 3.0  # DNS + TCP connect to a download host; without network, fail after this


class CLIPWeightsNotFoundError(BackboneError, FileNotFoundError):
    """No source could provide the requested CLIP weights."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLIP_CACHE_DIR", Path.home() / ".cache" / "clip")).expanduser()


def _openai_urls() -> dict[str, str]:
    import clip.clip

    return dict(clip.clip._MODELS)


def _state_dict_from_file(path: Path, allow_unsafe: bool = False) -> dict[str, torch.Tensor]:
    """Read a plain state dict (weights_only), or a TorchScript archive (OpenAI's .pt) when ``allow_unsafe``."""
    what = "CLIP checkpoint"
    fix = ("MODEL.BACKBONE.NAME must be an OpenAI model name or a CLIP state dict, e.g. open_clip_pytorch_model.bin "
           "from the Hugging Face Hub")
    if is_torchscript_archive(path):
        return load_torchscript_state_dict(path, what=what, error=BackboneError, allow_unsafe=allow_unsafe)
    obj = load_torch_file(path, what=what, error=BackboneError, allow_unsafe=allow_unsafe, fix=fix)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path} does not hold a state dict of tensors (found {type(obj).__name__}); {fix}.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_clip(state_dict: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Build an fp32 CLIP on the CPU; the caller casts it to the run's precision."""
    from clip.model import build_model

    try:
        model = build_model(dict(state_dict)).float()
        # build_model stores the weights in fp16; reload so fp32 checkpoints keep their precision
        model.load_state_dict({k: v for k, v in state_dict.items()
                               if k not in ("input_resolution", "context_length", "vocab_size")})
    except (KeyError, RuntimeError, IndexError, ValueError, AttributeError) as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise BackboneError(f"{source} is not an OpenAI-CLIP state dict ({detail}); MODEL.BACKBONE.NAME must be "
                            "an OpenAI model name or the weights of one.") from None
    return model.eval()


def reachable(urls: list[str], timeout: float = PROBE_TIMEOUT_S) -> dict[str, bool]:
    """Whether a TCP connection to each URL's host opens, all probed at once within ``timeout`` in all
    (DNS included: the probes run in threads, so a stuck resolver cannot block for longer)."""
    result: dict[str, bool] = {}

    def probe(url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        try:
            socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
            result[url] = True
        except OSError:
            result[url] = False

    threads = [threading.Thread(target=probe, args=(url,), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {url: result.get(url, False) for url in urls}


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _from_hub(name: str, cache_dir: Path | None) -> Path:
    from huggingface_hub import hf_hub_download

    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(NETWORK_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(NETWORK_TIMEOUT_S))
    return Path(hf_hub_download(HUB_REPOS[name], HUB_FILENAME, cache_dir=str(cache_dir) if cache_dir else None))


def _from_hub_cache(name: str, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(HUB_REPOS[name], HUB_FILENAME, cache_dir=str(cache_dir) if cache_dir else None)
    return Path(found) if isinstance(found, str) else None


def _from_openai_url(url: str, target: Path) -> Path:
    """The old OpenAI URL, with a timeout, sha256 check and an atomic write."""
    expected_sha = url.split("/")[-2]

    def download(out) -> None:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha:
            raise ValueError(f"checksum mismatch for {url}")

    atomic_write(target, download)
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
    hub = f"Hugging Face Hub {HUB_REPOS[name_or_path]}/{HUB_FILENAME}"
    hub_cache = cache / "hub"
    try:
        cached = _from_hub_cache(name_or_path, hub_cache)
    except Exception as err:  # e.g. huggingface_hub not installed
        cached, hub_error = None, f"{type(err).__name__}: {err}"
    else:
        hub_error = "offline (HF_HUB_OFFLINE) and not in the local HF cache"
    if cached is not None:
        return cached, f"Hugging Face Hub cache {HUB_REPOS[name_or_path]}"
    url = urls[name_or_path]
    online = {} if _hub_offline() else reachable([_hub_endpoint(), url])
    if online.get(_hub_endpoint()):
        try:
            return _from_hub(name_or_path, hub_cache), f"Hugging Face Hub {HUB_REPOS[name_or_path]}"
        except Exception as err:  # HTTP errors, missing package: fall through to the next source
            hub_error = f"{type(err).__name__}: {err}"
    elif online:
        hub_error = f"{_hub_endpoint()} unreachable within {PROBE_TIMEOUT_S:.0f} s: no network?"
    tried.append(f"{hub} under {hub_cache} ({hub_error})")
    if not online:
        tried.append(f"{url} (skipped: HF_HUB_OFFLINE is set)")
    elif not online[url]:
        tried.append(f"{url} (unreachable within {PROBE_TIMEOUT_S:.0f} s)")
    else:
        try:
            return _from_openai_url(url, openai_file), "OpenAI URL"
        except Exception as err:
            tried.append(f"{url} ({type(err).__name__}: {err})")
    raise CLIPWeightsNotFoundError(
        f"Could not obtain CLIP weights for {name_or_path!r}. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Fix: download {HUB_FILENAME} from https://huggingface.co/{HUB_REPOS[name_or_path]} and either set "
        f"MODEL.BACKBONE.NAME to its path, or place the OpenAI file as {openai_file} (MODEL.CLIP_CACHE_DIR or "
        "$CLIP_CACHE_DIR choose that folder)."
    )


def load_clip(name_or_path: str, cache_dir: str | Path | None = None, allow_unsafe: bool = False) -> torch.nn.Module:
    """An fp32 OpenAI-architecture CLIP on the CPU, from a model name or a checkpoint path.

    ``allow_unsafe`` (MODEL.ALLOW_UNSAFE_LOAD) admits TorchScript archives such as OpenAI's original .pt files."""
    path, source = resolve_clip_weights(name_or_path, cache_dir)
    logger.info("Loading CLIP %s from %s (%s)", name_or_path, path, source)
    return build_clip(_state_dict_from_file(path, allow_unsafe), str(path))
