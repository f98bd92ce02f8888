"""Do a label-conditioned GPT's reviews read as their label? Generate, then let a classifier judge them.

    python benchmarks/labelgpt_imdb.py --gpt RUN --out generated.jsonl [--n 100] [--max-new-tokens 150]
    genforge eval JUDGE_RUN --data generated.jsonl      # accuracy = the share judged as their intended label

Writes --n reviews per label of the GPT run (generate_labelled, seed 0, one seed per label) as JSONL
rows {"text", "label"}, the labels as the run stores them (IMDB's "0" / "1" are written as integers,
as in the source data). Empty samples are dropped and counted. docs/label-conditioned-gpt.md has the
whole check (slice, training commands, result).
"""
from __future__ import annotations

import argparse
import json

import genforge


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpt", required=True, help="a label-conditioned GPT run")
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--n", type=int, default=100, help="reviews per label")
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--temperature", type=float, default=0.8)
    args = p.parse_args()
    pipe = genforge.load(args.gpt, device="cpu")
    rows, empty = [], 0
    for i, label in enumerate(pipe.labels):
        for text in pipe.generate_labelled(label, args.n, args.max_new_tokens, args.temperature, seed=i):
            if text.strip():
                rows.append({"text": text, "label": int(label) if label.isdigit() else label})
            else:
                empty += 1
    with open(args.out, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"wrote {len(rows)} reviews to {args.out} ({empty} empty samples dropped)")


if __name__ == "__main__":
    main()
