"""The `genforge` command: parse arguments, call one Python API function per subcommand.

    genforge train gpt --data input.txt --out runs/shakespeare --train.max_iters=2000
    genforge sample runs/shakespeare --prompt "ROMEO:" --num-samples 3
    genforge eval runs/shakespeare --data other.txt
    genforge data get shakespeare
    genforge serve runs/shakespeare [more runs] --port 8000 --api-key KEY
    genforge train gan --data ../shared/datasets/mnist --preset dcgan-hinge-sn
    genforge sample runs/gan-... --n 64 --out grid.png [--label 7] [--interpolate]
    genforge eval runs/gan-...     genforge eval --samples DIR|FILE.npz --ref mnist
    genforge train classifier --data imdb/train.jsonl.gz --preset nbbag --out runs/imdb
    genforge classify runs/imdb "A wonderful film."      genforge cv --folds 5 --data train.jsonl
    genforge train imageclf --data mnist      genforge classify runs/imageclf-... digit.png
    genforge synth runs/cdcgan --n 1000 --out synth/mnist [--judge RUN --min-confidence 0.9] [--dedup 0.05]
    genforge synth-eval images --data ../shared/datasets/mnist --out runs/se --fractions 0.01,0.1,1
    genforge export runs/shakespeare --format onnx [--quantize int8]   genforge sample RUN --backend onnx
    genforge serve runs/shakespeare/onnx runs/mnist-gan/onnx --backend onnx

Heavy imports (torch, ...) happen inside the subcommands, so `genforge --help` is instant. What
differs between families (sampling, evaluation, the hints after training) is answered by the
family module (genforge/families/, the `base.Family` contract), so no command names a family.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path


def _positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from . import families  # the registry only: no family module (nor torch) is imported
    p = argparse.ArgumentParser(prog="genforge", description="Train, sample, evaluate and serve small "
                                "generative models on your own data.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (any --section.key=value overrides the config)",
                       description="Train a model. Extra --section.key=value arguments override the "
                       "config, e.g. --train.max_iters=2000 --model.n_layer=4.")
    t.add_argument("family", help=f"model family: {', '.join(families.FAMILIES)}")
    t.add_argument("--data", help="training data (file or folder); sets data.path")
    t.add_argument("--preset", help="named configuration preset (see --list-presets)")
    t.add_argument("--out", help="run directory (default runs/FAMILY-TIMESTAMP)")
    t.add_argument("--seed", type=int, help="random seed; sets train.seed")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--init-from", help="start from a trained run (fine-tuning) or hf:DIR (GPT-2 weights)")
    t.add_argument("--vqvae", help="text2image: the stage-1 image tokenizer run; sets prior.vqvae")
    t.add_argument("--errors", choices=["strict", "replace"], help="invalid UTF-8 in the data: fail or replace")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--list-presets", action="store_true", help="print the family's presets and exit")

    s = sub.add_parser("sample", help="generate from a trained run")
    s.add_argument("run", help="run directory, checkpoint file, or hf:DIR")
    s.add_argument("--prompt", dest="prompts", action="append", default=[],
                   help="text to continue (GPT), or a caption (text-to-image; repeat it for a row per prompt)")
    s.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate per sample")
    s.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy (default 0.8 for GPT, the run's setting for text-to-image)")
    s.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens")
    s.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with mass p")
    s.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text)")
    s.add_argument("--num-samples", type=_positive_int, default=1, help="independent samples")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    s.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: one-token steps are too small to split, and extra "
                   "threads stall when other programs share the cores); 0 = torch's default")
    s.add_argument("--n", type=_positive_int, default=None,
                   help="images to generate (GAN; default 64, or a row of 8 per class for a conditional grid)")
    s.add_argument("--out", help="output PNG (GAN; default samples.png), or .npz for the raw images")
    s.add_argument("--label", default=None,
                   help="class to generate: a conditional GAN's class index, a label-conditioned GPT's label")
    s.add_argument("--interpolate", action="store_true", help="latent interpolation strips instead of a grid (GAN)")
    s.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: generate from `genforge export` files without torch (RUN = the export, or a run "
                   "exported to RUN/onnx)")
    s.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (text-to-image; 1 = none, default: the run's setting)")
    s.add_argument("--guidance-from", type=int, default=None, metavar="CODE",
                   help="the first image code guided; earlier ones sample at scale 1 (text-to-image; default: the "
                   "run's, chosen by its guidance sweep)")

    e = sub.add_parser("eval", help="evaluate a trained run on a data set")
    e.add_argument("run", nargs="?", help="run directory, checkpoint file, or hf:DIR")
    e.add_argument("--data", help="evaluation data (GPT: required; GAN: defaults to the run's data set)")
    e.add_argument("--errors", choices=["strict", "replace"], default="strict")
    e.add_argument("--device", default="auto")
    e.add_argument("--samples", help="images from any generator (folder of PNGs or .npz), scored against --ref")
    e.add_argument("--ref", help="reference data set for --samples: a path or a name (e.g. mnist)")
    e.add_argument("--n", type=_positive_int, default=10000, help="images per side (GAN protocol)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (GAN)")
    e.add_argument("--retune", action="store_true", help="text-to-image: re-run the guidance sweep on the training "
                   "split first and save its choice in the run's checkpoints")
    e.add_argument("--guidance", type=float, help="text-to-image: evaluate at this guidance scale (default: the run's)")
    e.add_argument("--guidance-from", type=int, metavar="CODE", help="text-to-image: the first guided code (default: "
                   "the run's)")
    e.add_argument("--inception", action="store_true", help="also Inception FID (needs local Inception weights)")
    e.add_argument("--feature-steps", type=int, default=0, help="training steps of the feature classifier "
                   "(GAN; 0 = the run's setting, else automatic)")
    e.add_argument("--text-field", help="JSONL key / CSV column of the text (default: as in training)")
    e.add_argument("--label-field", help="classifiers: JSONL key / CSV column of the label")

    c = sub.add_parser("classify", help="classify texts (or image files) with a trained classifier run")
    c.add_argument("run", help="run directory or checkpoint file")
    c.add_argument("texts", nargs="*", help="texts to classify, or image files for an image classifier "
                   "(one JSON line each is printed)")
    c.add_argument("--input", help="file of texts: .jsonl / .csv (text field) or .txt (one text a line)")
    c.add_argument("--output", help="write predictions here as JSONL (default: print)")
    c.add_argument("--text-field", help="JSONL key / CSV column of the text (default: as in training)")
    c.add_argument("--errors", choices=["strict", "replace"], default="strict")
    c.add_argument("--device", default="auto")

    n = sub.add_parser("ensemble", help="combine trained classifier runs into one (weighted mean of probabilities)")
    n.add_argument("runs", nargs="+", help="classifier run directories (same labels)")
    n.add_argument("--out", required=True, help="run directory for the ensemble")
    n.add_argument("--weights", help="comma-separated weights, one per run (default: equal)")
    n.add_argument("--val", help="labelled validation data (not test data): fit a temperature on the combined "
                   "probabilities (default: members' own temperatures only)")

    v = sub.add_parser("cv", help="k-fold cross-validation of a classifier (mean ± std of every metric)",
                       description="Stratified k-fold cross-validation; extra --section.key=value arguments "
                       "override the config as in `train classifier`.")
    v.add_argument("--data", required=True, help="labelled data; sets data.path")
    v.add_argument("--family", default="classifier", help="classifier (texts) or imageclf (images)")
    v.add_argument("--folds", type=int, default=5, help="number of folds")
    v.add_argument("--preset", help="classifier preset")
    v.add_argument("--out", help="folder for the fold runs and cv.json (default runs/cv-TIMESTAMP)")
    v.add_argument("--seed", type=int, help="random seed; sets train.seed (and the folds)")
    v.add_argument("--init-from", help="start every fold from this GPT run")
    v.add_argument("--no-progress", action="store_true", help="no progress bars")

    m = sub.add_parser("demo", help="train a small GPT on bundled text, then sample (a minute or two)")
    m.add_argument("--out", default="runs/demo", help="run directory")
    m.add_argument("--seconds", type=float, default=90.0, help="training time budget")

    v = sub.add_parser("serve", help="serve runs over an OpenAI-compatible HTTP API, with a playground at /")
    v.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or NAME=RUN to pick the model id)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    v.add_argument("--port", type=int, default=8000, help="port to listen on")
    v.add_argument("--api-key", default=os.environ.get("GENFORGE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $GENFORGE_API_KEY; none = open)")
    v.add_argument("--cors-origins", nargs="*", default=[], metavar="ORIGIN",
                   help="browser origins allowed to call the API ('*' = any); default: none")
    v.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    v.add_argument("--max-batch", type=_positive_int, default=32, help="sequences decoded together per GPT model")
    v.add_argument("--max-queue", type=int, default=256, help="waiting sequences before requests get 429")
    v.add_argument("--queue-timeout", type=float, default=30.0, help="seconds a request may wait for a slot")
    v.add_argument("--request-timeout", type=float, default=300.0, help="wall-clock limit of one request, seconds")
    v.add_argument("--max-tokens-limit", type=_positive_int, default=4096, help="largest max_tokens allowed")
    v.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default 1: one-token decode steps are too small to split)")
    v.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: serve `genforge export` folders (or runs exported to RUN/onnx) on onnxruntime; "
                   "export folders given with torch are served from ONNX too")
    v.add_argument("--engine", choices=["process", "thread"], default="process",
                   help="where a GPT's batching engine runs: its own process (default: no GIL shared with the "
                   "HTTP event loop) or a thread of the server's")
    v.add_argument("--stream-interval", type=float, default=0.05, metavar="SECONDS",
                   help="least time between stream chunks after the first token; tokens made meanwhile go "
                   "out together (default 0.05; 0 = a chunk per token)")

    y = sub.add_parser("synth", help="make a labelled synthetic data set from a generator run (writes manifest.json)")
    y.add_argument("run", help="a conditional GAN, text-to-image or label-conditioned GPT run")
    y.add_argument("--out", required=True, help="folder for the set and its manifest.json (new or empty)")
    y.add_argument("--n", type=int, default=100, help="samples per class (before filtering)")
    y.add_argument("--per-class", help="counts per class instead of --n, e.g. 'cat=100,dog=50'")
    y.add_argument("--seed", type=int, default=0, help="random seed (class k is drawn with seed + k)")
    y.add_argument("--temperature", type=float, help="sampling temperature (GPT, text-to-image)")
    y.add_argument("--guidance", type=float, help="classifier-free guidance scale (text-to-image)")
    y.add_argument("--max-new-tokens", type=_positive_int, default=200, help="tokens per generated text (GPT)")
    y.add_argument("--judge", "--filter-judge", dest="judge", help="classifier run: keep only samples it assigns "
                   "to their intended label with probability >= --min-confidence")
    y.add_argument("--min-confidence", type=float, default=0.5, help="judge threshold (with --judge)")
    y.add_argument("--label-from", help="classifier run labelling an unconditional generator's samples")
    y.add_argument("--dedup", type=float, help="drop near-copies of training items: RMS pixel distance below "
                   "this (images, [0, 1] units), or word 4-gram overlap above this share (texts)")
    y.add_argument("--format", choices=["folder", "npz", "jsonl"], help="folder of class folders of PNGs (images' "
                   "default), one .npz, or JSONL (texts)")
    y.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic set in --out")
    y.add_argument("--device", default="auto")
    y.add_argument("--no-progress", action="store_true", help="no progress bar")

    x = sub.add_parser("synth-eval", help="does synthetic data help? real only / synthetic only / real+synthetic, "
                       "per real-data fraction and seed: table.md, plot.png, results.json")
    x.add_argument("route", choices=["images", "text"], help="images: conditional GAN + imageclf; text: "
                   "label-conditioned GPT + text classifiers")
    x.add_argument("--data", required=True, help="labelled real training data (image set, or labelled texts)")
    x.add_argument("--test", default="", help="labelled real test data (text; images use the set's test split)")
    x.add_argument("--out", required=True, help="folder for every run, results.json, table.md, plot.png (resumable)")
    x.add_argument("--fractions", default="0.01,0.1,1", help="real-data fractions, comma-separated")
    x.add_argument("--ratios", default="1", help="synthetic-to-real ratios of the mixed regimes, comma-separated")
    x.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated")
    x.add_argument("--classifiers", default="default", help="classifier presets, comma-separated (default: the "
                   "family's default preset)")
    x.add_argument("--val-fraction", type=float, default=0.1, help="real validation share, drawn per seed")
    x.add_argument("--gen-preset", help="generator preset (images: cdcgan)")
    x.add_argument("--gen-seconds", type=float, default=60.0, help="time budget of each generator run "
                   "(0 = none: train by steps, e.g. --gen-set train.max_iters=3000)")
    x.add_argument("--clf-seconds", type=float, default=30.0, help="time budget of each classifier run")
    x.add_argument("--clf-steps", type=int, default=500, help="optimizer steps of every classifier run, the same "
                   "in every regime (0 = each preset's own epochs, which favours the larger data sets)")
    x.add_argument("--gen-set", action="append", metavar="SECTION.KEY=VALUE", help="generator config override")
    x.add_argument("--clf-set", action="append", metavar="SECTION.KEY=VALUE", help="classifier config override")
    x.add_argument("--gen-init", help="start the GPT from this run (pre-trained on unlabelled text: allowed, stated)")
    x.add_argument("--extra-weight", type=float, help="data.extra_weight of the mixed image regimes")
    x.add_argument("--judge-real", type=float, metavar="P", help="keep only synthetic samples the seed's real-only "
                   "classifier gives their intended label probability >= P (twice the pool is drawn first)")
    x.add_argument("--image-size", type=_positive_int, default=28, help="image size of every stage (images)")
    x.add_argument("--channels", type=int, choices=[1, 3], default=1, help="image channels (images)")
    x.add_argument("--temperature", type=float, help="sampling temperature of the generator (synth)")
    x.add_argument("--no-progress", action="store_true", help="no progress bars")
    x = sub.add_parser("export", help="export a run for deployment: ONNX (a torch-free runtime) or GPT-2 files")
    x.add_argument("run", help="run directory, checkpoint file, or hf:DIR")
    x.add_argument("--format", default="onnx", help="onnx (GPT, GAN, sequence classifiers, image families) "
                   "or hf (GPT runs GPT-2 can express)")
    x.add_argument("--out", help="export directory (default RUN/onnx or RUN/hf)")
    x.add_argument("--quantize", help="int8: also write dynamically quantised linear layers, used by the runtime; "
                   "sizes and quality of both in quantize.json")
    x.add_argument("--data", help="--quantize: the data the quality is measured on (default: the run's own)")
    x.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    g = dsub.add_parser("get", help="download a public data set (sha256-checked)")
    g.add_argument("name", help="data set name, e.g. shakespeare, mnist")
    g.add_argument("--dir", help="destination folder (default: the genforge cache)")
    g.add_argument("--mirror", help="base URL to fetch from instead of the original location")
    return p


def cmd_train(args, rest: list[str]) -> int:
    from . import config, families
    family = families.get(args.family)
    if args.list_presets:
        for name, preset in family.PRESETS.items():
            print(f"{name}: {json.dumps(preset)}")
        return 0
    overrides = config.parse_overrides(rest)
    if args.resume:  # config.json (and --model.* overrides) against the last checkpoint, before anything is built
        from . import validate
        validate.resume(args.out, args.family, overrides.get("model"))
    if args.data:
        overrides.setdefault("data", {})["path"] = args.data
    if args.seed is not None:
        overrides.setdefault("train", {})["seed"] = args.seed
    if args.vqvae:
        overrides.setdefault("prior", {})["vqvae"] = args.vqvae
    if args.errors:
        overrides.setdefault("data", {})["errors"] = args.errors
    run, result = family.train(preset=args.preset, overrides=overrides, out=args.out, resume=args.resume,
                               init_from=args.init_from, progress=not args.no_progress)
    code = 0 if result.stopped != "interrupted" else 130
    if not run.is_main:  # under torchrun, rank 0 reports
        return code
    metric = family.METRICS.get(result.metric, result.metric)
    best = f", best {metric} {result.best:.4f}" if result.best is not None else ""
    print(f"genforge: stopped ({result.stopped}) at step {result.step} after {result.seconds:.0f}s{best}")
    print(f"genforge: run saved in {run.path}  (config.json, checkpoints/, metrics.jsonl, loss.png, tb/)")
    steps = family.next_steps(run.path) + [f"tensorboard --logdir {run.path / 'tb'}"]
    print(f"  next: {'   |   '.join(steps)}")
    return code


def cmd_sample(args) -> int:
    def one_prompt(family: str) -> None:  # every run but text-to-image takes one --prompt
        if len(args.prompts) > 1:
            raise ValueError(f"--prompt: given {len(args.prompts)} times; a {family} run takes one prompt "
                             "(several make a grid row each only for text-to-image runs)")
        args.prompt = args.prompts[0] if args.prompts else ""

    if args.backend == "onnx":  # no torch on this path
        from . import onnx_pipelines
        pipe = onnx_pipelines.load(args.run, threads=max(args.threads, 1))
        if pipe.family in ("text2image", "captiongan"):  # a grid row per --prompt; the run's sampling defaults
            from .onnx_images import sample_images
            return sample_images(pipe, args)
        one_prompt(pipe.family)
        args.temperature = 0.8 if args.temperature is None else args.temperature
        return onnx_pipelines.sample_command(pipe, args)
    from . import families, inference
    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)
    from .families.base import TextGenerationPipeline, TextToImagePipeline
    pipe = inference.load(args.run, device=args.device)
    if isinstance(pipe, TextToImagePipeline):
        args.prompt = args.prompts[0] if args.prompts else ""
    else:
        one_prompt(pipe.family)
    if args.temperature is None and isinstance(pipe, TextGenerationPipeline):
        args.temperature = 0.8
    return families.get(pipe.family).sample_command(pipe, args)


def cmd_eval(args) -> int:
    from . import families
    if args.samples or args.run is None:
        return eval_images(args)
    return families.of_run(args.run).eval_command(args)


def eval_images(args) -> int:
    """--samples: images from any generator (a folder of PNGs or .npz) scored against --ref."""
    from .metrics import protocol
    if not args.samples:
        raise ValueError("genforge eval: give a RUN, or --samples PATH --ref DATASET")
    if not args.ref:
        raise ValueError("--samples needs --ref DATASET (a path, or a name such as mnist)")
    report = protocol.evaluate_samples(args.samples, args.ref, n=args.n, seed=args.seed, inception=args.inception,
                                       feature_steps=args.feature_steps)
    print(json.dumps(report, indent=2))
    return 0


def cmd_classify(args) -> int:
    from . import inference
    from .families.base import ClassificationPipeline, ImageClassificationPipeline
    if bool(args.texts) == bool(args.input):
        raise ValueError("give texts to classify, or --input FILE (not both)")
    pipe = inference.load(args.run, device=args.device)
    if isinstance(pipe, ImageClassificationPipeline):
        return classify_images(pipe, args)
    if not isinstance(pipe, ClassificationPipeline):
        raise ValueError(f"{args.run}: a {pipe.family!r} run; `classify` needs a classifier run")
    if args.input:
        if not args.output:
            raise ValueError("--input needs --output FILE (predictions are written as JSONL)")
        n = pipe.classify_file(args.input, args.output, errors=args.errors, text_field=args.text_field)
        print(f"genforge: {n:,} predictions written to {args.output}", file=sys.stderr)
        return 0
    lines = [json.dumps({"text": t, **p}, ensure_ascii=False) for t, p in zip(args.texts, pipe.classify(args.texts))]
    return write_lines(lines, args.output)


def classify_images(pipe, args) -> int:
    """`genforge classify RUN a.png b.png`: image files, resized to the model's size, one JSON line each."""
    from pathlib import Path
    if args.input:
        raise ValueError(f"--input: {args.run} classifies images; give the image files: genforge classify RUN a.png")
    for name in args.texts:
        if not Path(name).is_file():
            raise FileNotFoundError(f"{name}: no such image file")
    images = pipe.read_images([Path(name).read_bytes() for name in args.texts], args.texts)
    lines = [json.dumps({"image": name, **p}, ensure_ascii=False) for name, p in zip(args.texts, pipe.classify(images))]
    return write_lines(lines, args.output)


def write_lines(lines: list[str], output: str | None) -> int:
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    return 0


def cmd_ensemble(args) -> int:
    from .families import classifier
    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ValueError(f"--weights {args.weights}: expected comma-separated numbers, e.g. 1,2") from None
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"--weights {args.weights}: weights must be finite numbers")
    run = classifier.ensemble(args.runs, args.out, weights, val_path=args.val)
    print(f"genforge: ensemble of {len(args.runs)} runs saved in {run.path}; try: genforge eval {run.path} --data FILE")
    return 0


def cmd_cv(args, rest: list[str]) -> int:
    from . import config, families
    from .runtime import main_process
    family = families.get(args.family)
    if not hasattr(family, "cross_validate"):
        raise ValueError(f"--family {args.family}: no cross-validation for this family (classifier, imageclf)")
    overrides = config.parse_overrides(rest)
    overrides.setdefault("data", {})["path"] = args.data
    if args.seed is not None:
        overrides.setdefault("train", {})["seed"] = args.seed
    res = family.cross_validate(args.preset, overrides, folds=args.folds, out=args.out,
                                    init_from=args.init_from, progress=not args.no_progress)
    if not main_process():  # under torchrun, rank 0 reports
        return 0
    print(f"{args.folds}-fold cross-validation ({args.data}):")
    for name, s in res["summary"].items():
        print(f"  {name:32s} {s['mean']:.4f} ± {s['std']:.4f}")
    return 0


def cmd_synth(args) -> int:
    from . import synth
    per_class = synth.parse_per_class(args.per_class) if args.per_class else None
    doc = synth.make(args.run, args.out, n=args.n, per_class=per_class, seed=args.seed, temperature=args.temperature,
                     guidance=args.guidance, max_new_tokens=args.max_new_tokens, judge=args.judge,
                     min_confidence=args.min_confidence, label_from=args.label_from, dedup=args.dedup,
                     fmt=args.format, overwrite=args.overwrite, command=["genforge", *sys.argv[1:]],
                     device=args.device, progress=not args.no_progress)
    c = doc["counts"]
    print(f"genforge: {c['total']:,} synthetic samples in {args.out} (kept per class {c['kept']}; dropped "
          f"{c['dropped'] or 'none'}); manifest: {args.out}/manifest.json")
    return 0


def _numbers(flag: str, text: str, kind=float) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text}: expected comma-separated numbers, e.g. 0.01,0.1,1") from None


def cmd_synth_eval(args) -> int:
    from . import synth_eval
    report = synth_eval.run(
        args.route, args.data, args.out, fractions=_numbers("--fractions", args.fractions),
        ratios=_numbers("--ratios", args.ratios), seeds=_numbers("--seeds", args.seeds, int),
        classifiers=[c.strip() for c in args.classifiers.split(",") if c.strip()], test=args.test,
        val_fraction=args.val_fraction, gen_preset=args.gen_preset, gen_seconds=args.gen_seconds,
        clf_seconds=args.clf_seconds, gen_overrides=synth_eval.parse_sets(args.gen_set),
        clf_overrides=synth_eval.parse_sets(args.clf_set), gen_init=args.gen_init, extra_weight=args.extra_weight,
        size=args.image_size, channels=args.channels, progress=not args.no_progress, clf_steps=args.clf_steps,
        synth_options={"temperature": args.temperature} if args.temperature is not None else None,
        judge_real=args.judge_real)
    print((Path(args.out) / "table.md").read_text())
    print(f"genforge: {len(report['rows'])} classifier runs; {args.out}/results.json, table.md, plot.png")
    return 0


def cmd_export(args) -> int:
    from .export import export
    out = export(args.run, args.format, args.out, args.quantize, args.overwrite, args.data)
    print(f"genforge: exported {args.run} to {out}" + (
        f"; try: genforge sample {out} --backend onnx (GPT, GAN), or genforge.onnx_pipelines.load('{out}')"
        if args.format == "onnx" else f"; load it as hf:{out}"))
    return 0


def cmd_data(args) -> int:
    from .data import download
    folder = download.get(args.name, directory=args.dir, mirror=args.mirror)
    print(f"genforge: {args.name} is in {folder}")
    return 0


def cmd_serve(args) -> int:
    from pydantic import ValidationError

    from . import checkpoint, validate
    from .onnx_pipelines import MANIFEST, read_manifest
    from .run import find_checkpoint
    from .server import Settings, serve
    try:
        settings = Settings(host=args.host, port=args.port, api_key=args.api_key, cors_origins=args.cors_origins,
                            device=args.device, max_batch=args.max_batch, max_queue=args.max_queue,
                            queue_timeout=args.queue_timeout, request_timeout=args.request_timeout,
                            max_tokens_limit=args.max_tokens_limit, threads=args.threads,
                            stream_interval=args.stream_interval, backend=args.backend,
                            engine=args.engine)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    for run in args.runs:  # fail before listening when a run is missing
        path = run.split("=", 1)[1] if "=" in run and not run.startswith("hf:") else run
        if args.backend == "onnx" or (Path(path) / MANIFEST).is_file():
            read_manifest(path)
        elif not path.startswith("hf:"):
            ckpt = find_checkpoint(path)
            validate.checkpoint_meta(checkpoint.read_meta(ckpt), ckpt)
    serve(args.runs, settings)
    return 0


def cmd_demo(args) -> int:
    from . import demo
    from .run import RunDir
    resume = RunDir(args.out).checkpoint("last").exists()
    if resume:
        print(f"genforge demo: {args.out} exists; continuing it", file=sys.stderr)
    return demo.run(out=args.out, seconds=args.seconds, resume=resume)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("train", "cv"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from .errors import USER_ERRORS
    try:
        if args.command in ("train", "cv"):
            code = (cmd_train if args.command == "train" else cmd_cv)(args, rest)
            if code == 0:  # under torchrun: all ranks leave the process group together, before exit
                from .runtime import leave_group
                leave_group()
            return code
        return {"sample": cmd_sample, "eval": cmd_eval, "data": cmd_data, "demo": cmd_demo,
                "serve": cmd_serve, "classify": cmd_classify, "ensemble": cmd_ensemble,
                "synth": cmd_synth, "synth-eval": cmd_synth_eval, "export": cmd_export}[args.command](args)
    except KeyboardInterrupt:
        print("\ngenforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except USER_ERRORS as e:
        if os.environ.get("GENFORGE_DEBUG"):
            raise
        # one line, whatever value it quotes: control characters (newlines too) are shown escaped
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(e))
        # one write, newline included, so the lines of processes sharing a terminal never run together
        sys.stderr.write(f"genforge: error: {message}\n")
        sys.stderr.flush()
        return 1 if type(e).__name__ == "TrainingDiverged" else 2
