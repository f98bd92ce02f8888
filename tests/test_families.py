"""One contract over the family registry: every family and every preset builds, trains two steps,
checkpoints, reloads through `genforge.load` to the trained model's outputs (same seed, same tokens,
images or probabilities), and its pipeline follows its kind's Protocol (genforge/families/base.py).

Every preset runs at a reduced size so the whole file takes seconds on a CPU: widths, depths, context,
vocabulary and hash buckets are capped (`CAPS`), everything else (positions, norms, activations,
losses, spectral norm, conditioning, optimizers, precision, pooling...) is the preset's own. The gpt2
preset (124M) in particular is built at this reduced size. A text2image preset trains over a 4-step
tokenizer run.
"""
from __future__ import annotations

import numpy as np
import pytest

import genforge
from genforge import config, families
from genforge.families import base
from genforge.runtime import make_runtime
from genforge.trainer import Trainer
from tests.conftest import TEXT, make_digit_like, make_reviews, write_captioned_bars

pytestmark = pytest.mark.usefixtures("one_thread")

# size fields capped at these values (a tuple field: each element); a preset's smaller value stays
CAPS = {
    "gpt": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16}, "data": {"vocab_size": 300},
            "train": {"grad_accum": 2}},
    "gan": {"model": {"g_width": 8, "d_width": 4, "z_dim": 16, "mlp_hidden": 32}, "gan": {"n_critic": 2}},
    "captiongan": {"model": {"g_width": 8, "d_width": 4, "z_dim": 16}, "text": {"dim": 16, "n_head": 2}},
    "classifier": {"model": {"embed_dim": 16, "hidden": 16, "n_layer": 1, "n_head": 2},
                   "data": {"buckets": 4096, "max_len": 32, "vocab_size": 2000}},
    "vqvae": {"model": {"width": 8, "res_blocks": 1, "groups": 4, "codebook_size": 16, "code_dim": 4},
              "vq": {"monitor_images": 8, "grid_pairs": 2}},
    "imageclf": {"model": {"width": 4, "hidden": 8}},
    "text2image": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32}},
}
# two optimizer steps, one evaluation (at step 2: the best checkpoint is the final model), no extras
STEPS = {
    "gpt": {"train": {"batch_size": 4, "max_iters": 2, "eval_interval": 2, "eval_iters": 1, "samples": False}},
    "gan": {"train": {"batch_size": 8, "max_iters": 2, "eval_interval": 2}, "gan": {"monitor_samples": 0}},
    "captiongan": {"train": {"batch_size": 8, "max_iters": 2, "eval_interval": 2}, "gan": {"monitor_samples": 0}},
    "classifier": {"train": {"batch_size": 16, "max_iters": 2, "eval_interval": 2}, "fit": {"epochs": 0}},
    "vqvae": {"train": {"batch_size": 8, "max_iters": 2, "eval_interval": 2}},
    "imageclf": {"train": {"batch_size": 16, "max_iters": 2, "eval_interval": 2}, "fit": {"epochs": 0}},
    "text2image": {"train": {"batch_size": 4, "max_iters": 2, "eval_interval": 2, "eval_iters": 1, "samples": False},
                   "prior": {"tune_guidance": False}},
}
# the vqvae is no generator: an image tokenizer (images <-> codes)
CONTRACT = {"gpt": base.TextGenerationPipeline, "gan": base.ImageGenerationPipeline,
            "classifier": base.ClassificationPipeline, "vqvae": base.ImageTokenizerPipeline,
            "imageclf": base.ImageClassificationPipeline, "captiongan": base.TextToImagePipeline,
            "text2image": base.TextToImagePipeline}
CASES = [(name, preset) for name in families.FAMILIES for preset in families.get(name).PRESETS]


def write_data(name: str, tmp_path) -> str:
    if name == "gpt":
        (tmp_path / "corpus.txt").write_text(TEXT)
        return str(tmp_path / "corpus.txt")
    if name in ("gan", "vqvae", "imageclf", "text2image"):
        images, labels = make_digit_like()
        np.savez(tmp_path / "bars.npz", images=images, labels=labels)
        return str(tmp_path / "bars.npz")
    if name == "captiongan":
        return str(write_captioned_bars(tmp_path / "bars"))
    import json
    (tmp_path / "reviews.jsonl").write_text("\n".join(json.dumps(r) for r in make_reviews()) + "\n")
    return str(tmp_path / "reviews.jsonl")


def tiny(family, preset: str, data: str) -> dict:
    """Overrides that shrink `preset` (see CAPS) and train it for two steps on `data`."""
    cfg = config.resolve(family.sections(), family.PRESETS, preset, {})
    ov: dict = {"data": {"path": data}}
    for section, caps in CAPS[family.FAMILY].items():
        for key, cap in caps.items():
            value = getattr(cfg[section], key)
            small = tuple(min(v, cap) for v in value) if isinstance(value, tuple) else min(value, cap)
            ov.setdefault(section, {})[key] = small
    for section, values in STEPS[family.FAMILY].items():
        ov.setdefault(section, {}).update(values)
    return ov


def live_pipeline(name: str, task, calibration=None):
    """The just-trained model as a pipeline, without a checkpoint (fp32, like `genforge.load`); a
    classifier gets the temperature fitted after training (`calibration` of the checkpoint's meta)."""
    rt = make_runtime("cpu", "fp32")
    family = families.get(name)
    if name == "gpt":
        return family.GPTPipeline(task.model.eval(), task.tokenizer, task.meta(), rt)
    if name == "gan":
        return family.GANPipeline(task.sampler.eval(), task.meta(), rt)
    if name == "vqvae":
        return family.VQVAEPipeline(task.model.eval(), task.meta(), rt)
    if name == "imageclf":
        return family.ImageClassifierPipeline(task.model.eval(), {**task.meta(), "calibration": calibration}, rt)
    if name == "captiongan":
        return family.CaptionGANPipeline(task.sampler.eval(), task.meta(), rt)
    if name == "text2image":
        return family.Text2ImagePipeline(task.prior.eval(), task.vqvae, task.vocab, task.meta(), rt)
    return family.ClassifierPipeline(task.model.eval(), task.featurizer, task.labels,
                                     {**task.meta(), "calibration": calibration}, rt)


def outputs(pipe):
    """Seeded outputs of a pipeline, by its contract."""
    if isinstance(pipe, base.TextGenerationPipeline):
        return pipe.generate("First", max_new_tokens=8, seed=0, num_samples=2)
    if isinstance(pipe, base.TextToImagePipeline):
        if pipe.family == "captiongan":  # trained on captioned bars (write_data)
            return pipe.generate(["a bar at the top", "the bottom bar"], n=2, seed=0)
        return pipe.generate(["a handwritten one", "the digit 2", "3", "zero"], 4, seed=0)
    if isinstance(pipe, base.ImageGenerationPipeline):
        return pipe.generate(4, seed=0)
    if isinstance(pipe, base.ImageTokenizerPipeline):
        images = make_digit_like(4, size=pipe.image_size)[0][..., None].repeat(pipe.channels, -1)  # (4, S, S, C)
        codes = pipe.encode(images)
        return np.concatenate([codes.reshape(4, -1), pipe.decode(codes).reshape(4, -1)], 1)
    if isinstance(pipe, base.ImageClassificationPipeline):
        return pipe.predict_proba(make_digit_like(n=4, seed=1)[0][..., None])
    return pipe.predict_proba(["superb wonderful film", "awful boring dull"])


def test_every_family_module_follows_the_family_contract():
    for name in families.FAMILIES:
        family = families.get(name)
        assert isinstance(family, base.Family) and family.FAMILY == name and family.PRESETS


@pytest.mark.parametrize("name,preset", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_preset_trains_checkpoints_and_reloads(name, preset, tmp_path, monkeypatch):
    family = families.get(name)
    trainers = []
    real_init = Trainer.__init__

    def keep(self, *a, **k):
        real_init(self, *a, **k)
        trainers.append(self)
    monkeypatch.setattr(Trainer, "__init__", keep)
    overrides = tiny(family, preset, write_data(name, tmp_path))
    if name == "text2image":  # over a 4-step tokenizer run
        from tests.families.test_text2image import tiny_tokenizer
        overrides.setdefault("prior", {})["vqvae"] = tiny_tokenizer(overrides["data"]["path"], tmp_path / "vq")
    run, result = family.train(preset, overrides, out=str(tmp_path / "run"), progress=False)
    assert result.step == 2 and result.stopped == "max_iters"
    task = trainers[-1].task  # the last trained: a text2image run trains its tokenizer first
    pipe = genforge.load(run.path)
    assert pipe.family == name and isinstance(pipe, CONTRACT[name])
    assert pipe.meta["step"] == 2 and pipe.meta["family"] == name
    again, live = outputs(pipe), outputs(live_pipeline(name, task, pipe.meta.get("calibration")))
    expected = outputs(genforge.load(run.checkpoint("best")))
    if isinstance(again, np.ndarray):
        assert np.array_equal(again, live) and np.array_equal(again, expected)
    else:
        assert again == live == expected
    info = families.model_info(pipe)  # what the server lists: the family's answer equals the contract's
    assert info and info == base.contract_info(pipe)
