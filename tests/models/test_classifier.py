"""Classifier networks: shapes, loss at init, NB ratios, masking, overfitting a tiny set, GPT reuse."""
import math

import pytest
import torch

from genforge.models.classifier import ClassifierConfig, TextClassifier, pool, probabilities, real_mask
from genforge.models.gpt import GPT, GPTConfig


def seq_batch(B=4, T=10, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (B, T), generator=g)
    return ids, torch.full((B,), T)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_sequence_models_start_near_chance(arch):
    torch.manual_seed(0)
    m = TextClassifier(ClassifierConfig(arch=arch, vocab_size=50, num_classes=2, max_len=10, embed_dim=16))
    ids, lengths = seq_batch()
    logits, loss = m(ids, lengths, targets=torch.tensor([0, 1, 0, 1]))
    assert logits.shape == (4, 1)  # binary: one logit, as Dense(1, sigmoid)
    assert abs(loss.item() - math.log(2)) < 0.1
    m3 = TextClassifier(ClassifierConfig(arch=arch, vocab_size=50, num_classes=3, max_len=10, embed_dim=16))
    assert m3(ids, lengths)[0].shape == (4, 3)


def test_article_lstm_has_the_keras_parameter_count():
    # Embedding 10000x16 = 160000; LSTM(16) = 4*(16*16 + 16*16 + 16) = 2112 (torch keeps two bias vectors:
    # +64); Dense 17
    m = TextClassifier(ClassifierConfig(arch="lstm", vocab_size=10000, num_classes=2, embed_dim=16, hidden=16))
    assert m.num_params() == 160000 + 2112 + 64 + 17


def test_masks_and_pooling_ignore_padding():
    mask = real_mask(torch.tensor([2, 3]), 4, "pre")
    assert mask.tolist() == [[False, False, True, True], [False, True, True, True]]
    assert real_mask(torch.tensor([1]), 3, "post").tolist() == [[True, False, False]]
    h = torch.arange(8.0).view(1, 4, 2)  # (B, T, C)
    m = torch.tensor([[True, True, False, False]])
    assert pool(h, m, "last").tolist() == [[2.0, 3.0]]
    assert pool(h, m, "mean").tolist() == [[1.0, 2.0]]
    assert pool(h, m, "max").tolist() == [[2.0, 3.0]]


def test_transformer_output_does_not_depend_on_padding_tokens():
    torch.manual_seed(0)
    m = TextClassifier(ClassifierConfig(arch="transformer", vocab_size=50, num_classes=2, max_len=8, embed_dim=16,
                                        pad="post", pool="mean")).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
    other = ids.clone()
    other[0, 3:] = 9  # different junk in the padded positions
    lengths = torch.tensor([3])
    assert torch.allclose(m(ids, lengths)[0], m(other, lengths)[0], atol=1e-6)


def test_nb_ratios_point_the_right_way():
    m = TextClassifier(ClassifierConfig(arch="bag", embed_dim=0, nb=True, vocab_size=3, num_classes=2))
    counts = torch.tensor([[9, 1, 5], [1, 9, 5]])  # id 0: negative word, 1: positive, 2: neutral
    m.body.set_nb_ratios(counts, alpha=1.0)
    r = m.body.r[:, 0]
    assert r[0] < 0 < r[1] and abs(r[2]) < 1e-6
    m3 = TextClassifier(ClassifierConfig(arch="bag", embed_dim=0, nb=True, vocab_size=3, num_classes=3))
    m3.body.set_nb_ratios(torch.tensor([[9, 1, 1], [1, 9, 1], [1, 1, 9]]), alpha=1.0)
    assert m3.body.r.argmax(1).tolist() == [0, 1, 2]  # each id favours its own class


@pytest.mark.parametrize("cfg", [dict(arch="bag", embed_dim=0, nb=False), dict(arch="bag", embed_dim=8, dropout=0.0),
                                 dict(arch="lstm", embed_dim=8, hidden=8, dropout=0.0)])
def test_overfits_a_tiny_set(cfg, one_thread):
    torch.manual_seed(0)
    m = TextClassifier(ClassifierConfig(vocab_size=20, num_classes=2, max_len=6, **cfg))
    y = torch.tensor([0, 1, 0, 1])
    if cfg["arch"] == "bag":
        inputs = (torch.tensor([1, 2, 3, 4, 5, 6, 7, 8]), torch.tensor([0, 2, 4, 6]))
    else:
        inputs = (torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], [1, 1, 2, 2, 3, 3], [7, 8, 9, 7, 8, 9]]),
                  torch.full((4,), 6))
    from genforge.families.classifier import optimizers  # AdamW, plus SparseAdam for the bags' n-gram tables
    from genforge.trainer import TrainConfig
    opts = optimizers(m, TrainConfig(lr=0.05, weight_decay=0.0)).values()
    for _ in range(150):
        for opt in opts:
            opt.zero_grad()
        _, loss = m(*inputs, targets=y)
        loss.backward()
        for opt in opts:
            opt.step()
    assert loss.item() < 0.05
    assert m.predict_proba(*inputs).argmax(1).tolist() == y.tolist()


def test_class_weights_scale_the_loss():
    logits = torch.tensor([[2.0], [-1.0]])
    y = torch.tensor([1, 1])
    from genforge.models.classifier import classification_loss
    plain = classification_loss(logits, y)
    assert torch.allclose(classification_loss(logits, y, torch.tensor([1.0, 2.0])), 2 * plain)
    assert probabilities(torch.tensor([[0.0]])).tolist() == [[0.5, 0.5]]


def test_lstm_dropout_mask_is_shared_across_time_and_mode_is_restored():
    torch.manual_seed(0)
    m = TextClassifier(ClassifierConfig(arch="lstm", vocab_size=20, num_classes=2, embed_dim=8, hidden=4, dropout=0.5))
    seen = {}
    m.body.lstm.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
    m.train()
    m(torch.randint(2, 20, (3, 5)), torch.full((3,), 5))
    dropped = seen["x"] == 0  # (B, T, E)
    assert dropped.any() and torch.equal(dropped, dropped[:, :1].expand_as(dropped))
    m.predict_proba(torch.randint(2, 20, (3, 5)), torch.full((3,), 5))
    assert m.training


def test_gpt_body_reuses_a_pretrained_gpt():
    g = GPTConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    pre = GPT(g).eval()
    m = TextClassifier(ClassifierConfig(arch="gpt", vocab_size=30, num_classes=2, max_len=16, pad="post",
                                        pool="last"), g).eval()
    m.body.gpt.load_state_dict(pre.state_dict())
    ids = torch.randint(0, 30, (2, 16))
    assert m(ids, torch.tensor([16, 4]))[0].shape == (2, 1)
    # the pooled state at the last token, through the GPT's LM head, is the GPT's next-token prediction
    h = m.body(ids, torch.tensor([16, 16]))  # (B, C)
    assert torch.allclose(pre.lm_head(h), pre(ids)[0][:, -1], atol=1e-5)
