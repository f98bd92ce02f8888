"""Word vectors from unlabelled text, for the embeddings of word-level classifiers (`model.vectors=FILE`).

    python -m genforge.data.vectors --texts reviews.jsonl.gz --out vectors.safetensors [--dim 128]

Short labelled texts see most words once or twice: a CNN whose embeddings start at random learns
little about them. Vectors learnt from more text (any text, no labels) say which words behave alike.
They come from counting, not from a network, so they take seconds to minutes on a CPU: positive
pointwise mutual information of words within `window` of each other (context counts raised to 0.75,
which keeps rare contexts from dominating), then a truncated SVD, rows U * sqrt(S), unit length.
The file is a safetensors with one tensor, `vectors` (V, E), and the words (JSON) in its metadata.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from .words import words


def ppmi_svd(texts: list[str], dim: int = 128, vocab_size: int = 30000, window: int = 5, min_count: int = 2,
             punctuation: bool = False, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(words, (V, dim) float32 unit rows) from the co-occurrences of the `vocab_size` commonest words."""
    from scipy import sparse
    from sklearn.decomposition import TruncatedSVD

    toks = [words(t, punctuation) for t in texts]
    counts = Counter(w for ws in toks for w in ws)
    vocab = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_size] if c >= min_count]
    if len(vocab) <= dim:
        raise ValueError(f"vectors: {len(vocab)} words of >= {min_count} occurrences, need more than dim={dim}")
    stoi = {w: i for i, w in enumerate(vocab)}
    ids = [np.array([stoi.get(w, -1) for w in ws], dtype=np.int64) for ws in toks]
    flat = np.concatenate(ids)
    doc = np.repeat(np.arange(len(ids)), [len(a) for a in ids])
    V, rows, cols, vals = len(vocab), [], [], []
    for d in range(1, window + 1):  # pairs d apart in the same text, both in the vocabulary, weighted 1/d
        a, b = flat[:-d], flat[d:]
        keep = (doc[:-d] == doc[d:]) & (a >= 0) & (b >= 0)
        rows += [a[keep], b[keep]]
        cols += [b[keep], a[keep]]
        vals.append(np.full(2 * int(keep.sum()), 1.0 / d, dtype=np.float32))
    co = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(V, V)).tocsr()
    co.sum_duplicates()
    co = co.tocoo()
    ctx = np.asarray(co.sum(0)).ravel() ** 0.75
    row = np.asarray(co.sum(1)).ravel()  # log(c_ij * sum ctx / (row_i * ctx_j)), ctx smoothed
    pmi = np.log(co.data) + np.log(ctx.sum()) - np.log(row[co.row]) - np.log(ctx[co.col])
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (co.row[keep], co.col[keep])), shape=(V, V))
    svd = TruncatedSVD(dim, algorithm="randomized", n_iter=5, random_state=seed)
    u = svd.fit_transform(ppmi) / np.sqrt(svd.singular_values_)  # U * S -> U * sqrt(S)
    u /= np.linalg.norm(u, axis=1, keepdims=True).clip(1e-8)
    return vocab, u.astype(np.float32)


def save_vectors(path: str, vocab: list[str], vectors: np.ndarray) -> None:
    import torch
    from safetensors.torch import save_file
    if len(vocab) != len(vectors):
        raise ValueError(f"vectors: {len(vocab)} words but {len(vectors)} rows")
    save_file({"vectors": torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))}, path,
              metadata={"words": json.dumps(vocab)})


def load_vectors(path: str) -> tuple[list[str], "np.ndarray"]:
    """(words, (V, E) float32) from a file `save_vectors` wrote; a clear error for anything else."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, "np") as f:
            meta, names = f.metadata() or {}, list(f.keys())
            vectors = f.get_tensor("vectors") if "vectors" in names else None
    except (OSError, SafetensorError) as e:
        raise ValueError(f"model.vectors={path}: not a readable safetensors file ({e})") from None
    if vectors is None or vectors.ndim != 2 or "words" not in meta:
        raise ValueError(f"model.vectors={path}: needs a 2-D tensor 'vectors' and the words in its metadata")
    vocab = json.loads(meta["words"])
    if len(vocab) != len(vectors):
        raise ValueError(f"model.vectors={path}: {len(vocab)} words but {len(vectors)} rows")
    return vocab, vectors.astype(np.float32)


def embedding_init(path: str, vocab: list[str], weight) -> float:
    """Copy the file's vector into row i of `weight` (V, E) for every vocab[i] it holds, scaled to the
    std of the random rows (the words it lacks keep those); returns the share of vocab found."""
    import torch
    file_words, vectors = load_vectors(path)
    if vectors.shape[1] != weight.size(1):
        raise ValueError(f"model.vectors={path}: vectors of dimension {vectors.shape[1]}, but model.embed_dim="
                         f"{weight.size(1)}")
    index = {w: i for i, w in enumerate(file_words)}
    hits = [(i, index[w]) for i, w in enumerate(vocab) if w in index]
    if len(hits) < 0.1 * (len(vocab) - 2):
        raise ValueError(f"model.vectors={path}: holds {len(hits)} of the {len(vocab) - 2} vocabulary words; "
                         "vectors from text in another language or tokenisation?")
    rows, src = (torch.tensor(c) for c in zip(*hits))
    v = torch.from_numpy(vectors[src.numpy()])
    with torch.no_grad():
        weight[rows] = v * (weight.std() / v.std())
    return len(hits) / max(1, len(vocab) - 2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="PPMI + SVD word vectors from unlabelled text (labels never read)")
    ap.add_argument("--texts", required=True, help=".jsonl(.gz) with a text field, or .txt (one text a line)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=30000)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--punctuation", action="store_true", help="punctuation marks as words (data.punctuation)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from .labelled import read_texts
    texts = read_texts(a.texts).texts  # the labels, if the file has them, are not read
    vocab, vectors = ppmi_svd(texts, a.dim, a.vocab_size, a.window, punctuation=a.punctuation, seed=a.seed)
    save_vectors(a.out, vocab, vectors)
    print(f"{a.out}: {len(vocab):,} words x {a.dim} from {len(texts):,} texts")


if __name__ == "__main__":
    main()
