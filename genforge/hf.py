"""Import GPT-2-format weights from a Hugging Face directory (config.json + model.safetensors); the reverse,
writing such a directory from a GPT run, is `genforge export RUN --format hf` (genforge/export.py).

`genforge train gpt --init-from hf:DIR` and `genforge sample hf:DIR` use this. Only safetensors
weights are read: a directory with only pytorch_model.bin is refused (pickles can run code).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .data.tokenizers import BPETokenizer
from .models.gpt import GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def load_gpt2(path: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor], BPETokenizer]:
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.exists():
        raise FileNotFoundError(f"hf:{path}: no config.json")
    if not weights.exists():
        extra = " (pytorch_model.bin is never loaded: convert it to safetensors)" if (path / "pytorch_model.bin").exists() else ""
        raise FileNotFoundError(f"hf:{path}: no model.safetensors{extra}")
    hf = json.loads(cfg_file.read_text())
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"hf:{path}: model_type {hf.get('model_type')!r} is not supported (only 'gpt2')")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"hf:{path}: activation_function {act!r} is not supported")
    n_embd = hf["n_embd"]
    inner = hf.get("n_inner") or 4 * n_embd
    if inner % n_embd:
        raise ValueError(f"hf:{path}: n_inner={inner} is not a multiple of n_embd={n_embd}")
    cfg = GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                    n_head=hf["n_head"], n_embd=n_embd, mlp_ratio=inner // n_embd, dropout=0.0, bias=True,
                    pos="learned", norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                    qk_norm=False, activation="gelu" if act == "gelu" else "gelu_tanh", tie_weights=True)
    raw = load_file(str(weights))
    state = {}
    for name, t in raw.items():
        name = name.removeprefix("transformer.")
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers of older exports
        if name.endswith(CONV1D):
            t = t.t().contiguous()  # Conv1D stores (in, out); Linear wants (out, in)
        state[name] = t.float()
    state.setdefault("lm_head.weight", state["wte.weight"])
    return cfg, state, BPETokenizer.from_pretrained_dir(path)
