"""Export a trained run for deployment: ONNX files for the torch-free runtime, or a GPT-2 directory.

    genforge export RUN --format onnx [--out DIR] [--quantize int8 [--data FILE]] [--overwrite]
    genforge export RUN --format hf --out DIR          # GPT runs GPT-2 can express

ONNX (torch.onnx's dynamo exporter, fp32, dynamic batch and sequence axes), with DIR/genforge_export.json
describing what the runtime (genforge/onnx_pipelines.py) needs:
- GPT: `model.onnx`, a decoder with a KV cache named as onnxruntime-genai's decoder models are
  (input_ids, attention_mask, position_ids, past_key_values.N.key/value -> logits, present.N.key/value;
  past (B, nh, P, hs), P = 0 on the first call), `genai_config.json` and `tokenizer.json` +
  `tokenizer_config.json` for onnxruntime-genai (written to its documented schema: genai itself is not
  installed here), and genforge's own tokenizer in the manifest;
- GAN: `generator.onnx`, z (B, z_dim) [, labels (B,)] -> images (B, C, H, W) in [-1, 1] (the EMA generator
  when the run has one, as `genforge sample` uses);
- classifier: `model.onnx`, (input_ids (B, T), lengths (B,)) -> logits for the sequence models (lstm,
  transformer, a GPT encoder); (input_ids (total,), offsets (B,)) -> logits for the hashed n-gram bags
  (presets nbbag, the default, and bag); the featurizer, labels and temperature go in the manifest.
  Ensembles do not export (their members do).
`--quantize int8` adds `<name>.int8.onnx` (onnxruntime's dynamic quantisation of MatMul / Gemm / LSTM,
i.e. the linear layers), which the runtime then uses, and writes quantize.json: both files' sizes and the quality
of each (GPT: validation loss; classifier: accuracy; GAN: mean pixel change against fp32).
The image families (vqvae, text2image, captiongan, imageclf) are exported by genforge/export_images.py.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import inference
from .onnx_pipelines import FORMAT, MANIFEST, load as load_export, require

FORMATS = ("onnx", "hf")


def prepare_out(out: Path, overwrite: bool) -> None:
    """An empty (or new) --out; --overwrite replaces an earlier export, never another folder's files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"--out {out}: exists and is not empty; pass --overwrite to replace it")
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"--out {out}: --overwrite replaces only an earlier genforge export "
                                  f"(no {MANIFEST} there); choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export(run: str, fmt: str = "onnx", out: str | None = None, quantize: str | None = None,
           overwrite: bool = False, data: str | None = None) -> Path:
    """Export `run` to `out` (default RUN/onnx or RUN/hf); returns the export directory."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize {quantize!r}: only int8 is supported")
    if quantize and fmt != "onnx":
        raise ValueError("--quantize needs --format onnx")
    if fmt == "onnx":
        require("onnx", "onnxscript", "onnxruntime")
    pipe = inference.load(run, device="cpu")
    if fmt == "hf":
        if pipe.family != "gpt":
            raise ValueError(f"{run}: --format hf exports GPT runs only, not a {pipe.family!r} run")
        check_gpt2(pipe.model.config, run)
    dest = Path(out) if out else Path(str(run).removeprefix("hf:")) / fmt
    from .export_images import IMAGE_WRITERS
    writer = {"gpt": gpt_onnx, "gan": gan_onnx, "classifier": classifier_onnx, **IMAGE_WRITERS}.get(pipe.family)
    if fmt == "onnx" and writer is None:
        raise ValueError(f"{run}: a {pipe.family!r} run has no ONNX export yet")
    if fmt == "onnx" and pipe.family == "classifier":
        check_classifier(pipe, run)
    if quantize and pipe.family == "vqvae":
        raise ValueError(f"{run}: --quantize int8 does not apply to a vqvae run (its encoder's codes must stay exact, "
                         "and its convolutions stay fp32); export it in fp32")
    prepare_out(dest, overwrite)
    if fmt == "hf":
        gpt_hf(pipe, dest)
        (dest / MANIFEST).write_text(json.dumps({"format": "genforge-hf/1", "family": "gpt", "source": str(run)}))
        return dest
    manifest = {"format": FORMAT, "family": pipe.family, "source": str(run), "step": pipe.meta.get("step"),
                **writer(pipe, dest)}
    manifest["fp32_model"] = manifest["model"]
    if quantize:
        bag = manifest.get("featurizer", {}).get("kind") == "ngram"  # its n-gram table is a Gather
        manifest["model"] = quantize_int8(dest / manifest["model"], ("Gather",) if bag else ()).name
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    if quantize:
        report = quality(dest, manifest, pipe, data)
        (dest / "quantize.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    return dest

# ----------------------------------------------------------------------------- ONNX files


def save_onnx(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
              axes: dict[str, dict[int, str]]) -> None:
    """Export `module` on example `args` with every axis named in `axes` dynamic, names as given."""
    import onnx
    names = iter(inputs)  # args are tensors, or tuples of tensors (the past keys and values), in input order

    def dims(a):
        return tuple(dims(x) for x in a) if isinstance(a, tuple) else {i: torch.export.Dim.AUTO for i in axes[next(names)]}
    shapes = tuple(dims(a) for a in args)
    with torch.no_grad(), quiet():
        program = torch.onnx.export(module.eval(), args, None, input_names=inputs, output_names=outputs,
                                    dynamo=True, dynamic_shapes=shapes, verbose=False)
    proto = program.model_proto
    del proto.graph.value_info[:]  # intermediate shapes: onnxruntime infers its own (the quantiser trips on these)
    for value in [*proto.graph.input, *proto.graph.output]:  # the exporter's symbols (s12...) -> axis names
        for i, name in axes.get(value.name, {}).items():
            value.type.tensor_type.shape.dim[i].dim_param = name
    onnx.save(proto, str(path))


@contextlib.contextmanager
def quiet():
    """The exporters' and the quantiser's chatter (missing torchvision, deprecations, hints) off stderr."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


class PastCache:
    """The models/gpt.py cache protocol over ONNX inputs: the past keys/values of every layer (B, nh, P, hs)
    are concatenated with the new ones (the presents), the mask is causal and follows attention_mask."""

    def __init__(self, positions: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, ...]):
        self.pos, self.mask, self.past, self.present = positions, mask, past, []

    def positions(self, T: int) -> torch.Tensor:
        return self.pos  # (B, T)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        k, v = torch.cat([self.past[2 * layer], k], 2), torch.cat([self.past[2 * layer + 1], v], 2)  # (B, nh, L, hs)
        self.present += [k, v]
        return k, v, self.mask

    def advance(self, T: int) -> None:
        pass


class Decoder(nn.Module):
    """GPT.hidden + the head, with explicit positions and past keys/values: onnxruntime-genai's signature."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids, attention_mask, position_ids, past):
        g, T, L = self.gpt, input_ids.size(1), attention_mask.size(1)
        causal = torch.arange(L)[None, :] <= torch.arange(L - T, L)[:, None]  # (T, L): query i is key L - T + i
        mask = causal[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, T, L)
        cache = PastCache(position_ids, mask, past)
        x, rope = g.wte(input_ids), None  # (B, T, C)
        if g.wpe is not None:
            x = x + g.wpe(position_ids)
        else:
            rope = (g.rope_cos[position_ids][:, None], g.rope_sin[position_ids][:, None])  # (B, 1, T, hs/2)
        for i, block in enumerate(g.h):
            x = block(x, rope, cache, i)
        return (g.lm_head(g.ln_f(x)), *cache.present)


def save_decoder(gpt, path: Path) -> dict[str, Any]:
    """The KV-cached decoder graph of a GPT (models/gpt.py) at `path`, and the sizes the runtime needs."""
    c = gpt.config
    hs, L = c.n_embd // c.n_head, c.n_layer
    if c.block_size < 4:
        raise ValueError(f"model.block_size={c.block_size}: the ONNX export traces 4 positions; it needs >= 4")
    kv = [f"past_key_values.{i}.{w}" for i in range(L) for w in ("key", "value")]
    present = [f"present.{i}.{w}" for i in range(L) for w in ("key", "value")]
    B, T, P = 2, 2, 2  # example sizes above 1: torch.export specialises sizes 0 and 1
    args = (torch.randint(0, c.vocab_size, (B, T)), torch.ones(B, P + T, dtype=torch.int64),
            torch.arange(P, P + T).repeat(B, 1), tuple(torch.zeros(B, c.n_head, P, hs) for _ in kv))
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "position_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"},
            **{n: {0: "batch_size", 2: "past_sequence_length"} for n in kv},
            **{n: {0: "batch_size", 2: "total_sequence_length"} for n in present}}
    save_onnx(Decoder(gpt), args, path, ["input_ids", "attention_mask", "position_ids", *kv],
              ["logits", *present], axes)
    return {"context_length": c.block_size, "n_layer": L, "n_head": c.n_head, "head_size": hs,
            "vocab_size": c.vocab_size}


def gpt_onnx(pipe, out: Path) -> dict[str, Any]:
    dims = save_decoder(pipe.model, out / "model.onnx")
    write_genai_files(pipe, out)
    return {"model": "model.onnx", "tokenizer": pipe.tokenizer.to_dict(), **dims}


def hf_tokenizer(tok):
    """genforge's tokenizer as a Hugging Face `tokenizers` one: BPE as it is; characters as a BPE with no
    merges (every character its own token) and a decoder that joins the pieces unchanged."""
    if tok.kind == "bpe":
        return tok.tok
    from tokenizers import Tokenizer, decoders, models
    out = Tokenizer(models.BPE(vocab=dict(tok.stoi), merges=[]))
    out.decoder = decoders.Fuse()
    return out


def write_genai_files(pipe, out: Path) -> None:
    """genai_config.json (onnxruntime-genai's schema: decoder I/O names, sizes, search defaults) and the
    tokenizer files it reads. `type` gpt2: the architecture (rotary, QK-norm, ...) lives in the graph."""
    c, tok = pipe.model.config, pipe.tokenizer
    eot = tok.eot_id if tok.eot_id is not None else 0
    config = {"model": {
        "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "context_length": c.block_size,
        "type": "gpt2", "vocab_size": c.vocab_size,
        "decoder": {"session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                    "filename": "model.onnx", "head_size": c.n_embd // c.n_head, "hidden_size": c.n_embd,
                    "num_attention_heads": c.n_head, "num_key_value_heads": c.n_head, "num_hidden_layers": c.n_layer,
                    "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                               "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                               "past_value_names": "past_key_values.%d.value"},
                    "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                                "present_value_names": "present.%d.value"}}},
        "search": {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                   "max_length": c.block_size, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0}}
    (out / "genai_config.json").write_text(json.dumps(config, indent=2))
    hf_tokenizer(tok).save(str(out / "tokenizer.json"))
    special = tok.decode([eot]) if tok.eot_id is not None else None
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer" if tok.kind == "bpe" else "PreTrainedTokenizerFast",
         "bos_token": special, "eos_token": special, "model_max_length": c.block_size}, indent=2))


def gan_onnx(pipe, out: Path) -> dict[str, Any]:
    c = pipe.g.config
    names = ["z", "labels"] if c.num_classes else ["z"]
    args = (torch.randn(2, c.z_dim), torch.zeros(2, dtype=torch.int64))[:len(names)]
    save_onnx(pipe.g, args, out / "generator.onnx", names, ["images"], {n: {0: "batch_size"} for n in names + ["images"]})
    return {"model": "generator.onnx", "z_dim": c.z_dim, "num_classes": c.num_classes, "class_names": pipe.class_names,
            "image_size": c.image_size, "channels": c.channels}


class Logits(nn.Module):
    """A text classifier's forward as one output: (ids (B, T), lengths (B,)) -> logits (B, K)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, lengths):
        return self.model(input_ids, lengths)[0]


def check_classifier(pipe, run: str) -> None:
    if "ensemble" in pipe.meta:
        raise ValueError(f"{run}: an ensemble does not export to ONNX; export its member runs")


def classifier_onnx(pipe, out: Path) -> dict[str, Any]:
    if pipe.model.config.arch == "bag":
        return bag_onnx(pipe, out)
    T = pipe.featurizer.max_len
    args = (torch.randint(0, pipe.model.config.vocab_size, (2, T)), torch.tensor([T, max(1, T // 2)]))
    save_onnx(Logits(pipe.model), args, out / "model.onnx", ["input_ids", "lengths"], ["logits"],
              {"input_ids": {0: "batch_size", 1: "sequence_length"}, "lengths": {0: "batch_size"},
               "logits": {0: "batch_size"}})
    return {"model": "model.onnx", "featurizer": pipe.featurizer.to_dict(), "labels": pipe.labels,
            "temperature": pipe.temperature}


class BagLogits(nn.Module):
    """A hashed n-gram bag over (input_ids (total,), offsets (B,)) -> logits (B, K), EmbeddingBag's inputs
    (text i owns input_ids[offsets[i]:offsets[i + 1]]). The NB-linear bag is one table (buckets, K) =
    (w + nb_prior) * r, gathered and summed per text; fastText's is the mean embedding through the head.
    The per-text sums are an index_add over each id's text number (a cumsum of the text starts), which
    the exporter turns into ScatterND; an empty text scores the bias alone."""

    def __init__(self, model):
        super().__init__()
        c, body = model.config, model.body
        self.model, self.mean = model, c.embed_dim > 0
        table = body.emb.weight if self.mean else (body.w + (c.nb_prior if c.nb else 0.0)) * body.r
        self.register_buffer("table", table.detach().clone())  # (buckets, E or K)

    def forward(self, input_ids, offsets):
        total, B, dt = input_ids.size(0), offsets.size(0), self.table.dtype
        starts = torch.zeros(total + 1, dtype=dt).index_add_(0, offsets[1:], torch.ones(B - 1, dtype=dt))
        text = starts[:total].cumsum(0).long()  # (total,) the text each id belongs to
        out = torch.zeros(B, self.table.size(1), dtype=dt).index_add_(0, text, F.embedding(input_ids, self.table))
        if self.mean:  # (B, E) sums -> means (an empty bag stays 0, as EmbeddingBag's) -> head
            sizes = torch.diff(offsets, append=offsets.new_full((1,), total))  # (B,)
            out = self.model.head(out / sizes.clamp(min=1)[:, None].to(dt))
        return out if self.model.bias is None else out + self.model.bias


def bag_onnx(pipe, out: Path) -> dict[str, Any]:
    """The bag and nbbag presets: the model in ONNX, its featurizer (words -> hashed n-gram ids) run by the
    runtime with genforge.data.words.ngram_ids, the same numpy code training used."""
    args = (torch.randint(0, pipe.model.config.vocab_size, (5,)), torch.tensor([0, 3]))
    save_onnx(BagLogits(pipe.model), args, out / "model.onnx", ["input_ids", "offsets"], ["logits"],
              {"input_ids": {0: "total_ids"}, "offsets": {0: "batch_size"}, "logits": {0: "batch_size"}})
    return {"model": "model.onnx", "featurizer": pipe.featurizer.to_dict(), "labels": pipe.labels,
            "temperature": pipe.temperature}

# ----------------------------------------------------------------------------- int8


def quantize_int8(path: Path, extra: tuple[str, ...] = ()) -> Path:
    """onnxruntime's dynamic quantisation of the linear layers (MatMul, Gemm, and an LSTM's gate matrices):
    int8 weights, activations quantised per call. Writes NAME.int8.onnx beside the fp32 file. `extra` op
    types: Gather for the n-gram bags, whose table is stored int8 and dequantised when it runs."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    target = path.with_suffix(".int8.onnx")
    with quiet():
        quantize_dynamic(str(path), str(target), op_types_to_quantize=["MatMul", "Gemm", "LSTM", *extra], weight_type=QuantType.QInt8)
    return target


def quality(dest: Path, manifest: dict[str, Any], pipe, data: str | None) -> dict[str, Any]:
    """Size and quality of the fp32 and the int8 file side by side (`data`: the evaluation data)."""
    report: dict[str, Any] = {}
    for name, file in (("fp32", manifest["fp32_model"]), ("int8", manifest["model"])):
        onnx_pipe = load_export(dest, model=file)
        report[name] = {"file": file, "bytes": (dest / file).stat().st_size, **measure(onnx_pipe, pipe, data)}
    return report


def measure(onnx_pipe, pipe, data: str | None) -> dict[str, Any]:
    from .export_images import IMAGE_WRITERS, measure_images
    if pipe.family in IMAGE_WRITERS:
        return measure_images(onnx_pipe, pipe, data)
    cfg = pipe.meta.get("config", {}).get("data", {})
    if pipe.family == "gan":  # same latents: how far int8 moves the pixels (0..255)
        z = np.random.default_rng(0).standard_normal((64, onnx_pipe.z_dim))
        ref = pipe.generate(64, z=torch.from_numpy(z).float())
        return {"mean_abs_pixel_change_vs_torch": float(np.abs(onnx_pipe.generate(64, z=z).astype(float) - ref).mean())}
    if pipe.family == "classifier":
        from .data.labelled import encode_labels, read_labelled
        path = data or cfg.get("test_path") or cfg.get("val_path") or cfg.get("path")
        if not path or not Path(path).exists():
            return {"note": "no labelled data to measure accuracy on: pass --data FILE"}
        rows = read_labelled(path, cfg.get("text_field", "text"), cfg.get("label_field", "label"))
        y = encode_labels(rows, onnx_pipe.labels)
        return {"data": str(path), "accuracy": float((onnx_pipe.predict_proba(rows.texts).argmax(1) == y).mean())}
    from .data.text import encode_corpus
    path = data or cfg.get("path")
    if not path or not Path(path).exists():
        return {"note": "no text to measure the validation loss on: pass --data FILE"}
    tokens = np.asarray(encode_corpus(path, pipe.tokenizer, cfg.get("text_field", "text"), progress=False), np.int64)
    T = onnx_pipe.context_length
    tail = tokens[int(len(tokens) * (1 - cfg.get("val_fraction", 0.1))):] if data is None else tokens
    n = min(16, (len(tail) - 1) // T)  # up to 16 whole windows of the validation tail
    if n < 1:
        return {"note": f"{path}: fewer than {T + 1} tokens to measure the loss on"}
    x = tail[:n * T + 1]
    logits = np.concatenate([onnx_pipe.logits(x[i * T:(i + 1) * T][None]) for i in range(n)])  # (n, T, V)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, x[1:].reshape(n, T)[..., None], -1)
    return {"data": str(path), "val_loss": float(nll.mean()), "tokens": n * T}

# ----------------------------------------------------------------------------- GPT-2 (transformers)


def check_gpt2(c, run: str) -> None:
    """GPT-2 has learned positions, LayerNorm, GELU (tanh or exact), a tied head and no QK-norm (a run
    without biases exports with zero biases)."""
    wants = {"pos": "learned", "norm": "layernorm", "qk_norm": False, "tie_weights": True}
    bad = [f"model.{k}={getattr(c, k)!r} (GPT-2: {v!r})" for k, v in wants.items() if getattr(c, k) != v]
    if c.activation not in ("gelu", "gelu_tanh"):
        bad.append(f"model.activation={c.activation!r} (GPT-2: 'gelu_tanh' or 'gelu')")
    if bad:
        raise ValueError(f"{run}: GPT-2 cannot express {', '.join(bad)}")


def gpt_hf(pipe, out: Path) -> None:
    """config.json, model.safetensors (Conv1D layout, transformer.* names) and tokenizer files."""
    from safetensors.torch import save_file

    from .hf import CONV1D
    c = pipe.model.config
    state = {}
    for name, t in pipe.model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to wte
        state[f"transformer.{name}"] = (t.t() if name.endswith(CONV1D) else t).contiguous().float()
    for name, m in pipe.model.named_modules():  # model.bias=false: GPT-2's biases, all zero
        if isinstance(m, nn.Linear | nn.LayerNorm) and name != "lm_head" and m.bias is None:
            state[f"transformer.{name}.bias"] = torch.zeros(m.weight.size(0))
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    act = "gelu_new" if c.activation == "gelu_tanh" else "gelu"
    (out / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": c.vocab_size,
        "n_positions": c.block_size, "n_ctx": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer,
        "n_head": c.n_head, "n_inner": c.mlp_ratio * c.n_embd, "activation_function": act,
        "layer_norm_epsilon": c.norm_eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "tie_word_embeddings": True, "bos_token_id": pipe.tokenizer.eot_id, "eos_token_id": pipe.tokenizer.eot_id},
        indent=2))
    hf_tokenizer(pipe.tokenizer).save(str(out / "tokenizer.json"))
