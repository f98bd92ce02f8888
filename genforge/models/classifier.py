"""Text classifiers: article 004's LSTM, a bag of n-grams (fastText / NB-weighted), a CNN over word
embeddings (Kim 2014), a transformer encoder, and a classifier on top of a pre-trained GPT.

    genforge train classifier --data imdb/train.jsonl.gz --preset lstm|bag|nbbag|cnn|transformer

Reads in the order the networks run: pooling helper, the five bodies, the config, then the model
that owns the head and the loss. Inputs come from genforge/data/words.py: sequence models get
`(ids (B, T), lengths (B,))`, the bag model gets `(ids (total,), offsets (B,))`. Two classes use
one logit and binary cross-entropy (article 004's Dense(1, sigmoid)); more use softmax.

Axis legend: B batch, T tokens, E embedding width, H hidden width (CNN: filters per width), K outputs
(1 if binary).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gpt import GPT, Block, GPTConfig

# ----------------------------------------------------------------------------- helpers


def real_mask(lengths: torch.Tensor, T: int, pad: str) -> torch.Tensor:
    """(B, T) True where a position holds a real token (padding sits before it when pad='pre')."""
    pos = torch.arange(T, device=lengths.device)[None, :]  # (1, T)
    return pos >= T - lengths[:, None] if pad == "pre" else pos < lengths[:, None]


def pool(h: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """h (B, T, C) -> (B, C): the last real position, the mean or the max over real positions."""
    if how == "last":
        last = mask.long().cumsum(1).argmax(1)  # (B,) index of the last real position
        return h[torch.arange(h.size(0), device=h.device), last]
    m = mask[..., None].to(h.dtype)  # (B, T, 1)
    if how == "mean":
        return (h * m).sum(1) / m.sum(1).clamp(min=1)
    return h.masked_fill(~mask[..., None], float("-inf")).amax(1)

# ----------------------------------------------------------------------------- bodies


class LSTMBody(nn.Module):
    """Embedding -> input dropout -> LSTM -> pooled state (article 004: the final state).

    As in Keras' LSTM(dropout=p), one dropout mask per sequence is reused at every time step;
    initialisation follows Keras too (uniform embeddings, orthogonal recurrent weights, forget
    gate bias 1), so the `lstm` preset is the article's model, not just its shape.
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden, batch_first=True)
        self.out_dim = cfg.hidden
        nn.init.uniform_(self.emb.weight, -0.05, 0.05)
        H = cfg.hidden
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight_ih"):
                for i in range(4):
                    nn.init.xavier_uniform_(p.data[i * H:(i + 1) * H])
            elif name.startswith("weight_hh"):
                for i in range(4):
                    nn.init.orthogonal_(p.data[i * H:(i + 1) * H])
            else:  # bias_ih and bias_hh are summed by torch: the forget gate gets 1 once
                nn.init.zeros_(p)
                if name.startswith("bias_ih"):
                    p.data[H:2 * H] = 1.0

    def forward(self, ids, lengths):
        x = self.emb(ids)  # (B, T, E)
        if self.training and self.cfg.dropout > 0:
            keep = 1.0 - self.cfg.dropout
            x = x * torch.bernoulli(torch.full((x.size(0), 1, x.size(2)), keep, device=x.device)) / keep
        h, _ = self.lstm(x)  # (B, T, H)
        return pool(h, real_mask(lengths, ids.size(1), self.cfg.pad), self.cfg.pool)


class BagBody(nn.Module):
    """A bag of hashed n-grams. embed_dim > 0: fastText (mean of n-gram embeddings). embed_dim = 0:
    a linear model on binary n-gram features, optionally scaled by naive-Bayes log-count ratios r
    (NBSVM-like): score = sum over present n-grams of r * (w + nb_prior), w starting at 0. With
    nb_prior 0 this is logistic regression on NB-scaled features; nb_prior > 0 starts the model
    from naive Bayes (and weight decay pulls it back there)."""

    def __init__(self, cfg: ClassifierConfig, K: int):
        super().__init__()
        self.cfg = cfg
        if cfg.embed_dim > 0:  # sparse gradients: a step touches only the batch's n-grams
            self.emb = nn.EmbeddingBag(cfg.vocab_size, cfg.embed_dim, mode="mean", sparse=True)
            nn.init.uniform_(self.emb.weight, -1.0 / cfg.embed_dim, 1.0 / cfg.embed_dim)
            self.out_dim = cfg.embed_dim
        else:
            self.w = nn.Parameter(torch.zeros(cfg.vocab_size, K))
            self.register_buffer("r", torch.ones(cfg.vocab_size, K))  # NB ratios; 1 = plain linear
            self.out_dim = K

    def set_nb_ratios(self, counts: torch.Tensor, alpha: float) -> None:
        """r from per-class document counts (K_classes, V): log((p/|p|) / (q/|q|)) one-vs-rest."""
        counts = counts.double() + alpha
        if self.r.size(1) == 1:  # binary: class 1 against class 0
            p, q = counts[1], counts[0]
            self.r.copy_((torch.log(p / p.sum()) - torch.log(q / q.sum()))[:, None].float())
        else:
            rest = counts.sum(0, keepdim=True) - counts + alpha
            r = torch.log(counts / counts.sum(1, keepdim=True)) - torch.log(rest / rest.sum(1, keepdim=True))
            self.r.copy_(r.T.float())

    def forward(self, ids, offsets):
        if self.cfg.embed_dim > 0:
            return self.emb(ids, offsets)  # (B, E)
        B = offsets.numel()
        sizes = torch.diff(offsets, append=offsets.new_tensor([ids.numel()]))
        seg = torch.repeat_interleave(torch.arange(B, device=ids.device), sizes)  # (total,) text of each id
        prior = self.cfg.nb_prior if self.cfg.nb else 0.0
        vals = (self.w[ids] + prior) * self.r[ids]  # (total, K)
        return torch.zeros(B, vals.size(1), device=ids.device, dtype=vals.dtype).index_add_(0, seg, vals)


class CNNBody(nn.Module):
    """Kim (2014): word embeddings -> one 1-D convolution per width in `widths` (`hidden` filters each)
    -> ReLU -> max over the windows that lie on real tokens (a text shorter than a width keeps its
    one window) -> the maxima of all widths side by side; the model's dropout and head follow."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.embed_dim, cfg.hidden, k) for k in cfg.widths)
        self.out_dim = cfg.hidden * len(cfg.widths)

    def forward(self, ids, lengths):
        x = self.emb(ids).transpose(1, 2)  # (B, E, T)
        out = []
        for k, conv in zip(self.cfg.widths, self.convs):
            h = F.relu(conv(x)).transpose(1, 2)  # (B, T - k + 1, H): window t covers tokens t .. t+k-1
            windows = real_mask((lengths - k + 1).clamp(min=1), h.size(1), self.cfg.pad)
            out.append(pool(h, windows, "max"))  # (B, H)
        return torch.cat(out, 1)  # (B, H * len(widths))


class TransformerBody(nn.Module):
    """Token + learned position embeddings -> the GPT family's blocks without the causal mask (every token
    sees every real token) -> pooled, normalised state."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        g = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.max_len, n_layer=cfg.n_layer, n_head=cfg.n_head,
                      n_embd=cfg.embed_dim, dropout=cfg.dropout, bias=True, norm="layernorm", qk_norm=False,
                      activation="gelu", pos="learned")
        self.wte = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.wpe = nn.Embedding(cfg.max_len, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(g, causal=False) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.embed_dim)
        self.out_dim = cfg.embed_dim
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, ids, lengths):
        T = ids.size(1)
        mask = real_mask(lengths, T, self.cfg.pad)  # (B, T)
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(T, device=ids.device)))  # (B, T, E)
        for block in self.h:
            x = block(x, mask=mask[:, None, None, :])  # (B, 1, 1, T): padding is never attended to
        return pool(self.ln_f(x), mask, self.cfg.pool)


class GPTBody(nn.Module):
    """A pre-trained GPT's embeddings, blocks and final norm (its LM head unused), pooled."""

    def __init__(self, cfg: ClassifierConfig, gpt_config: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.gpt = GPT(gpt_config)
        self.out_dim = gpt_config.n_embd

    def forward(self, ids, lengths):
        h = self.gpt.hidden(ids)  # (B, T, C)
        return pool(h, real_mask(lengths, ids.size(1), self.cfg.pad), self.cfg.pool)

# ----------------------------------------------------------------------------- config


@dataclass
class ClassifierConfig:
    arch: Literal["lstm", "bag", "cnn", "transformer", "gpt"] = "bag"
    vocab_size: int = 0  # ids the input layer embeds; 0 = taken from the featurizer
    num_classes: int = 0  # 0 = taken from the training labels
    max_len: int = 100  # tokens per text (sequence models; positions of the transformer)
    embed_dim: int = 16  # embedding width (bag: 0 = linear model on the n-grams themselves)
    hidden: int = 16  # LSTM state size; cnn: filters per width
    widths: tuple[int, ...] = (3, 4, 5)  # cnn: convolution widths in tokens
    n_layer: int = 2  # transformer blocks
    n_head: int = 4
    dropout: float = 0.2  # LSTM: input dropout (Keras semantics); others: on embeddings and the pooled state
    pool: Literal["last", "mean", "max"] = "last"  # how a sequence becomes one vector
    pad: Literal["pre", "post"] = "pre"  # where padding goes (set from data.pad)
    nb: bool = False  # bag, embed_dim=0: scale n-grams by naive-Bayes log-count ratios
    nb_alpha: float = 1.0  # NB smoothing count
    nb_prior: float = 0.0  # bag with nb: weight every n-gram starts from (0 = logistic regression, 1 = naive Bayes)
    vectors: str = ""  # lstm/cnn/transformer over words: a word-vector file the embeddings start from
    freeze_vectors: bool = False  # with vectors: keep the embeddings as the file gave them (static)

    def validate(self):
        for name in ("max_len", "hidden", "n_layer", "n_head"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.embed_dim < 0 or (self.embed_dim == 0 and self.arch in ("lstm", "cnn", "transformer")):
            raise ValueError(f"model.embed_dim must be positive for arch {self.arch}, got {self.embed_dim}")
        if self.arch == "transformer" and self.embed_dim % self.n_head:
            raise ValueError(f"model.embed_dim={self.embed_dim} must be divisible by model.n_head={self.n_head}")
        if self.arch == "cnn" and not (self.widths and 1 <= min(self.widths) and max(self.widths) <= self.max_len):
            raise ValueError(f"model.widths must be widths between 1 and max_len={self.max_len}, got {self.widths}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.vectors and self.arch not in ("lstm", "cnn", "transformer"):
            raise ValueError(f"model.vectors needs arch lstm, cnn or transformer (word embeddings), not {self.arch}")
        if self.freeze_vectors and not self.vectors:
            raise ValueError("model.freeze_vectors=true needs model.vectors=FILE")
        if self.nb_alpha <= 0:
            raise ValueError(f"model.nb_alpha must be positive, got {self.nb_alpha}")

# ----------------------------------------------------------------------------- model


class TextClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig, gpt_config: GPTConfig | None = None):
        super().__init__()
        assert cfg.vocab_size > 0 and cfg.num_classes >= 2, "vocab_size and num_classes must be set"
        cfg.validate()
        self.config = cfg
        K = 1 if cfg.num_classes == 2 else cfg.num_classes
        if cfg.arch == "lstm":
            self.body = LSTMBody(cfg)
        elif cfg.arch == "bag":
            self.body = BagBody(cfg, K)
        elif cfg.arch == "cnn":
            self.body = CNNBody(cfg)
        elif cfg.arch == "transformer":
            self.body = TransformerBody(cfg)
        else:
            assert gpt_config is not None, "arch 'gpt' needs the pre-trained GPT's config"
            self.body = GPTBody(cfg, gpt_config)
        linear_bag = cfg.arch == "bag" and cfg.embed_dim == 0
        self.drop = nn.Dropout(0.0 if cfg.arch == "lstm" or linear_bag else cfg.dropout)
        self.head = nn.Identity() if linear_bag else nn.Linear(self.body.out_dim, K)
        if cfg.arch == "lstm":  # Keras Dense: Glorot-uniform weights, zero bias
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        elif cfg.arch == "bag" and not linear_bag:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.bias = nn.Parameter(torch.zeros(K)) if linear_bag else None

    def word_embedding(self) -> nn.Embedding:
        """The embedding `model.vectors` initialises."""
        return self.body.wte if self.config.arch == "transformer" else self.body.emb

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, *inputs, targets: torch.Tensor | None = None, class_weight: torch.Tensor | None = None):
        """inputs -> (logits (B, K), mean loss or None); targets are class indices (B,)."""
        logits = self.head(self.drop(self.body(*inputs)))
        if self.bias is not None:
            logits = logits + self.bias
        if targets is None:
            return logits, None
        return logits, classification_loss(logits, targets, class_weight)

    @torch.no_grad()
    def predict_proba(self, *inputs) -> torch.Tensor:
        """(B, num_classes) class probabilities; restores the train/eval mode it found."""
        was = self.training
        self.eval()
        try:
            return probabilities(self(*inputs)[0])
        finally:
            self.train(was)


def classification_loss(logits, targets, class_weight=None):
    """Binary cross-entropy on one logit, or cross-entropy on K; optional per-class weights."""
    if logits.size(1) == 1:
        w = class_weight[targets] if class_weight is not None else None
        return F.binary_cross_entropy_with_logits(logits[:, 0].float(), targets.float(), weight=w)
    return F.cross_entropy(logits.float(), targets, weight=class_weight)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1) -> (B, 2) via the sigmoid; (B, K) -> softmax."""
    logits = logits.float()
    if logits.size(1) == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return logits.softmax(dim=1)

