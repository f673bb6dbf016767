"""CLIP loading (file, TorchScript, offline Hub cache), prompted encoders vs CLIP's own forward, precision."""
from __future__ import annotations

import re

import pytest
import torch
from conftest import tiny_clip_model

from trainers.backbone.loading import HUB_FILENAME, HUB_REPOS, CLIPWeightsNotFoundError, load_clip
from trainers.errors import BackboneError
from trainers.backbone.precision import cast_clip_weights, resolve_precision
from trainers.backbone.text_encoder import EOT_TOKEN, SOT_TOKEN, PromptedTextEncoder, length_groups, tokenize
from trainers.backbone.vision_encoder import PromptedVisionEncoder, expand_prompts


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def test_load_state_dict_file(tiny_clip_state_dict_path):
    model = load_clip(str(tiny_clip_state_dict_path))
    assert _same_weights(model, tiny_clip_model())
    assert model.visual.conv1.weight.dtype == torch.float32


def test_torchscript_archive_needs_explicit_opt_in(tiny_clip_jit_path, capsys):
    with pytest.raises(BackboneError, match="TorchScript archive.*MODEL.ALLOW_UNSAFE_LOAD True"):
        load_clip(str(tiny_clip_jit_path))
    model = load_clip(str(tiny_clip_jit_path), allow_unsafe=True)
    assert _same_weights(model, tiny_clip_model())
    assert "torch.jit.load because MODEL.ALLOW_UNSAFE_LOAD is True" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (b"", "is empty (0 bytes)"),
    (b"not a checkpoint at all, just text\n", "is not a PyTorch file"),
    (b"PK\x03\x04" + bytes(100), "truncated zip archive"),
    (b"\x80\x04\x95" + bytes(20), "plain Python pickle"),
])
def test_backbone_file_that_is_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(BackboneError, match=re.escape(message)) as info:
        load_clip(str(path), allow_unsafe=True)  # never unpickled, even with the opt-in
    assert str(path) in str(info.value) and "pickled Python objects" not in str(info.value)


def test_backbone_state_dict_of_another_model(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv.weight": torch.zeros(2, 3)}, path)
    with pytest.raises(BackboneError, match="is not an OpenAI-CLIP state dict"):
        load_clip(str(path))


def test_openai_name_without_network_fails_fast_naming_every_source(tmp_path, monkeypatch):
    import socket
    import urllib.request

    import trainers.backbone.loading as loading

    probes = []

    def no_network(address, timeout=None, **kwargs):
        probes.append((address[0], timeout))
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(loading, "_from_hub", lambda *a: pytest.fail("the Hub is unreachable: no download attempt"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download from an unreachable host"))
    rounds = []
    probe_all = loading.reachable
    monkeypatch.setattr(loading, "reachable", lambda urls: rounds.append(urls) or probe_all(urls))
    with pytest.raises(CLIPWeightsNotFoundError) as info:
        load_clip("ViT-B/32", cache_dir=tmp_path)
    # bounded without measuring time: each host probed once (no retry loop), all within one 3 s probe
    hosts = [host for host, _ in probes]
    assert len(rounds) == 1 and len(hosts) == len(set(hosts)) == len(rounds[0]) == 2
    assert {timeout for _, timeout in probes} == {loading.PROBE_TIMEOUT_S}
    assert loading.PROBE_TIMEOUT_S <= 3
    msg = str(info.value)
    assert "ViT-B-32.pt (not present)" in msg and HUB_REPOS["ViT-B/32"] in msg and "unreachable" in msg
    assert "openaipublic" in msg and str(tmp_path / "ViT-B-32.pt") in msg


def _fake_hub_cache(root, repo: str, payload_path):
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / HUB_FILENAME).write_bytes(payload_path.read_bytes())


def test_hub_path_offline(tmp_path, tiny_clip_state_dict_path):
    _fake_hub_cache(tmp_path / "hub", HUB_REPOS["ViT-B/32"], tiny_clip_state_dict_path)
    model = load_clip("ViT-B/32", cache_dir=tmp_path)
    assert _same_weights(model, tiny_clip_model())


def test_every_openai_name_has_a_hub_repo():
    import clip

    assert set(clip.available_models()) == set(HUB_REPOS)
    assert all(repo.startswith("timm/") and repo.endswith(".openai") for repo in HUB_REPOS.values())


def test_missing_weights_error_names_model_sources_and_fix(tmp_path):
    with pytest.raises(CLIPWeightsNotFoundError) as info:
        load_clip("ViT-B/16", cache_dir=tmp_path)
    msg = str(info.value)
    assert "ViT-B/16" in msg and HUB_REPOS["ViT-B/16"] in msg and "ViT-B-16.pt" in msg and HUB_FILENAME in msg


def test_unknown_name_error():
    with pytest.raises(CLIPWeightsNotFoundError, match="neither an existing file"):
        load_clip("ViT-Z/99")


def test_tokenize_truncates_and_keeps_eot():
    long_text = " ".join(["word"] * 100)
    out = tokenize(["a cat", long_text], reserved=16)
    assert out.tokens.shape == (2, 61) and out.num_truncated == 1
    assert out.tokens[1, 0] == SOT_TOKEN and out.tokens[1, -1] == EOT_TOKEN
    assert out.tokens[0, 0] == SOT_TOKEN and out.tokens[0].argmax() == 3


def test_text_encoder_runs_only_to_last_eot_and_matches_full_pass():
    model = tiny_clip_model()
    encoder = PromptedTextEncoder(model)
    import clip

    tokens = clip.tokenize(["a photo of a cat.", "a much longer caption about a small dog on a red sofa"])
    with torch.no_grad():
        reference = model.encode_text(tokens)
        x, eot = encoder.embed(tokens)
        ours = encoder(x, eot)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_text_context_inserted_after_sot_matches_full_length_pass():
    model = tiny_clip_model()
    encoder = PromptedTextEncoder(model)
    ctx = torch.randn(4, 64)
    tokens = tokenize(["a red bird", "two dogs"], reserved=4).tokens
    with torch.no_grad():
        x, eot = encoder.embed(tokens, ctx)
        ours = encoder(x, eot)
        # reference: the whole 77-token sequence through CLIP's own modules
        full = (x + model.positional_embedding).permute(1, 0, 2)
        full = model.ln_final(model.transformer(full).permute(1, 0, 2))
        reference = full[torch.arange(2), eot] @ model.text_projection
    assert x.shape == (2, 77, 64) and torch.equal(eot, tokens.argmax(-1) + 4)
    assert torch.equal(x[:, 1:5], ctx.unsqueeze(0).expand(2, -1, -1))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def _padded_cost(lengths, groups, overhead):
    return sum((len(g) + overhead) * max(lengths[i] for i in g) for g in groups)


def test_length_groups_hand_cases_and_brute_force_optimum():
    # two lengths far apart: (40 + 16) * 10 + (40 + 16) * 77 = 4,872 < one group's (80 + 16) * 77 = 7,392
    groups = length_groups([10, 77] * 40, overhead_rows=16)
    assert [sorted(g) for g in groups] == [list(range(0, 80, 2)), list(range(1, 80, 2))]
    # close lengths: one group (36 * 22 = 792) beats two (26 * 20 + 26 * 22 = 1,092)
    assert len(length_groups([20] * 10 + [22] * 10, overhead_rows=16)) == 1
    assert length_groups([7, 7, 7]) == [[0, 1, 2]]
    # the least cost over every split of the sorted rows into contiguous runs, by enumeration
    import itertools
    import random

    rng = random.Random(0)
    for _ in range(20):
        lengths = [rng.randint(5, 40) for _ in range(rng.randint(1, 9))]
        overhead = rng.choice([0, 1, 3])
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        best = min(_padded_cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], overhead)
                   for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k))
        groups = length_groups(lengths, overhead_rows=overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert _padded_cost(lengths, groups, overhead) == best


def test_grouped_text_encoding_matches_full_pass_with_deep_prompts():
    """A batch of short and long captions runs in several length groups; features and gradients equal CLIP's
    full 77-token pass with the same context and deep prompts."""
    model = tiny_clip_model()
    encoder = PromptedTextEncoder(model)
    texts = ["a dog"] * 20 + [" ".join(["a small red bird on a branch"] * 6)] * 20
    texts = [t if i % 3 else t + " today" for i, t in enumerate(texts)]
    tokens = tokenize(texts, reserved=2).tokens
    ctx = torch.randn(2, 64, requires_grad=True)
    deep = [torch.randn(2, 64, requires_grad=True)]
    x, eot = encoder.embed(tokens, ctx)
    assert len(length_groups((eot + 1).tolist())) > 1
    ours = encoder(x, eot, deep)
    # reference: every row through all 77 positions, the deep prompt replacing positions 1..2 before block 1
    full = (x + model.positional_embedding).permute(1, 0, 2)
    blocks = model.transformer.resblocks
    full = blocks[0](full)
    full = torch.cat([full[:1], deep[0].unsqueeze(1).expand(-1, len(texts), -1), full[3:]])
    full = blocks[1](full).permute(1, 0, 2)
    reference = model.ln_final(full)[torch.arange(len(texts)), eot] @ model.text_projection
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(reference)
    got = torch.autograd.grad((ours * weights).sum(), [ctx, *deep])
    expected = torch.autograd.grad((reference * weights).sum(), [ctx, *deep])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_token_weights_scale_text_embeddings():
    model = tiny_clip_model()
    encoder = PromptedTextEncoder(model)
    tokens = tokenize(["a red bird"]).tokens
    weights = torch.ones(tokens.shape)
    weights[0, 2] = 0.5
    x, _ = encoder.embed(tokens, token_weights=weights)
    plain, _ = encoder.embed(tokens)
    torch.testing.assert_close(x[0, 2], plain[0, 2] * 0.5)
    torch.testing.assert_close(x[0, 1], plain[0, 1])


def test_vision_encoder_without_prompts_matches_clip():
    model = tiny_clip_model()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(PromptedVisionEncoder(model.visual)(images), model.encode_image(images),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("carry", [False, True])
def test_vision_prompts_appended_per_block(carry):
    model = tiny_clip_model()
    encoder = PromptedVisionEncoder(model.visual)
    images = torch.randn(2, 3, 32, 32)
    prompts = torch.randn(3, 64)  # only block 0 gets prompts
    provider = lambda i, x: expand_prompts(prompts, x.shape[1]) if i == 0 else None  # noqa: E731
    with torch.no_grad():
        ours = encoder(images, provider, carry=carry)
        x = encoder.stem(images)
        h = model.visual.transformer.resblocks[0](torch.cat([x, expand_prompts(prompts, 2)]))
        h = h if carry else h[:17]  # 1 CLS + 16 patches survive; prompts dropped unless carried
        h = model.visual.transformer.resblocks[1](h)
        reference = encoder.head(h[:17])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_precision_fallback_and_casting():
    cpu = torch.device("cpu")
    assert resolve_precision("fp16", cpu).name == "fp32"
    assert resolve_precision("amp", cpu).name == "fp32"
    bf16 = resolve_precision("bf16", cpu)
    model = cast_clip_weights(tiny_clip_model(), bf16)
    assert model.visual.conv1.weight.dtype == torch.bfloat16
    assert model.ln_final.weight.dtype == torch.float32  # LayerNorms stay fp32 as in OpenAI's release
    with pytest.raises(ValueError, match="PREC must be one of"):
        resolve_precision("fp8", cpu)


def test_bpe_vocabulary_is_loaded_once_for_every_layer(monkeypatch):
    """The text encoder, CoOp's name lengths and the caption datasets share one tokenizer (trainers/bpe.py)."""
    import clip
    import clip.simple_tokenizer

    from datasets.fdrd_formats import caption_token_length
    from trainers.backbone.text_encoder import tokenize
    from trainers.bpe import bpe_ids, clip_bpe, count_bpe_tokens

    built = []
    real = clip.simple_tokenizer.SimpleTokenizer

    def counting():
        built.append(1)
        return real()

    monkeypatch.setattr(clip.simple_tokenizer, "SimpleTokenizer", counting)
    clip_bpe.cache_clear(), bpe_ids.cache_clear()
    try:
        caption = "a photo of a crane (bird)."
        tokens = tokenize([caption]).tokens
        assert caption_token_length(caption) == int((tokens != 0).sum()) == int((clip.tokenize(caption) != 0).sum())
        assert count_bpe_tokens("crane (bird)") == 4
        assert len(built) == 1
    finally:
        clip_bpe.cache_clear(), bpe_ids.cache_clear()


def test_random_openai_clip_has_the_named_shapes_and_leaves_the_rng_alone():
    from trainers.backbone.architecture import describe_architecture, random_openai_clip

    state = torch.random.get_rng_state()
    model = random_openai_clip("ViT-B/32")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert describe_architecture(model) == "ViT-B/32"
    assert sum(p.numel() for p in model.parameters()) == 151_277_313  # OpenAI's ViT-B/32
    with pytest.raises(ValueError, match="ViT-B/16"):
        random_openai_clip("ViT-B/64")
