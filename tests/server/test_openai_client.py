"""The official openai client against a live server: models, completions, chat, images (and classify)."""
import base64
import concurrent.futures
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

import genforge


def test_models_list_and_retrieve(client):
    ids = {m.id: m for m in client.models.list()}
    assert set(ids) == {"tiny", "digits", "faces", "t2i", "sentiment"}
    assert all(m.owned_by == "genforge" and m.object == "model" for m in ids.values())
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_completion_matches_the_python_api_and_counts_tokens(client, tiny_run):
    pipe = genforge.load(tiny_run, device="cpu")
    r = client.completions.create(model="tiny", prompt="First Citizen", max_tokens=20, temperature=0)
    ref = pipe.generate("First Citizen", max_new_tokens=20, temperature=0)
    assert r.object == "text_completion" and r.model == "tiny"
    assert r.choices[0].text == ref[len("First Citizen"):]
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len("First Citizen") and r.usage.completion_tokens == 20
    assert r.usage.total_tokens == 20 + len("First Citizen")


def test_seeded_completion_is_the_same_alone_batched_and_as_genforge_sample(client, tiny_run):
    kw = dict(model="tiny", prompt="Speak", max_tokens=30, temperature=1.0, seed=123)
    alone = client.completions.create(**kw).choices[0].text
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # the same request among 7 others
        futures = [pool.submit(client.completions.create, **{**kw, "seed": s}) for s in (1, 2, 3, 123, 4, 5, 6, 7)]
        batched = [f.result().choices[0].text for f in futures]
    assert batched[3] == alone
    assert len(set(batched)) > 1
    ref = genforge.load(tiny_run, device="cpu").generate("Speak", 30, temperature=1.0, top_k=None, seed=123)
    assert alone == ref[len("Speak"):]


def test_n_list_prompts_and_stop(client):
    r = client.completions.create(model="tiny", prompt=["ab", "cd"], n=3, max_tokens=8, seed=5)
    assert [c.index for c in r.choices] == list(range(6))
    assert r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 48
    assert len({c.text for c in r.choices}) > 1, "n samples should differ"
    full = client.completions.create(model="tiny", prompt="All", max_tokens=40, seed=9).choices[0].text
    stop = full[10:12]
    cut = client.completions.create(model="tiny", prompt="All", max_tokens=40, seed=9, stop=[stop, "@@"]).choices[0]
    assert cut.finish_reason == "stop" and cut.text == full[:full.index(stop)] and stop not in cut.text


def test_streamed_completion_equals_the_unstreamed_one(client):
    kw = dict(model="tiny", prompt="Before", max_tokens=25, seed=3)
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    # tokens waiting when the sender gets to them go out merged, so a slow client sees fewer chunks;
    # the first token always goes out on its own
    assert len([c for c in chunks if c.choices and c.choices[0].text]) >= 2, "the text was not streamed"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 25


def test_echo_and_logprobs(client):
    r = client.completions.create(model="tiny", prompt="All:", max_tokens=5, echo=True, temperature=0)
    assert r.choices[0].text.startswith("All:") and len(r.choices[0].text) == 9
    r = client.completions.create(model="tiny", prompt="All:", max_tokens=4, logprobs=2, temperature=0)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text and len(lp.token_logprobs) == 4
    assert all(len(t) == 2 and max(t.values()) == pytest.approx(l, abs=1e-6)  # greedy: the top-1 is the chosen
               for t, l in zip(lp.top_logprobs, lp.token_logprobs))
    assert lp.text_offset == list(range(4))


def test_chat(client):
    messages = [{"role": "system", "content": "Speak."}, {"role": "user", "content": "hear me"}]
    r = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=12, seed=1,
                                       logprobs=True, top_logprobs=2)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant" and c.finish_reason in ("length", "stop")
    assert r.usage.prompt_tokens == len("System: Speak.\n\nUser: hear me\n\nAssistant:")
    assert "".join(t.token for t in c.logprobs.content) .startswith(c.message.content)
    assert all(len(t.top_logprobs) == 2 for t in c.logprobs.content)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=12, seed=1,
                                                 stream=True))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == c.message.content


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_images(client, server):
    r = client.images.generate(model="digits", prompt="7", n=3, response_format="b64_json", size="8x8",
                               extra_body={"seed": 4})
    imgs = [decode_png(d.b64_json) for d in r.data]
    assert len(imgs) == 3 and imgs[0].shape == (8, 8) and all(i[0, 0] == 7 for i in imgs)  # the prompt named class 7
    again = client.images.generate(model="digits", prompt="7", n=3, extra_body={"seed": 4})
    assert [d.b64_json for d in again.data] == [d.b64_json for d in r.data]
    labelled = client.images.generate(model="digits", prompt="", n=2, extra_body={"label": 2})
    assert all(decode_png(d.b64_json)[0, 0] == 2 for d in labelled.data)
    faces = client.images.generate(model="faces", prompt="", n=2)
    assert decode_png(faces.data[0].b64_json).shape == (16, 16, 3)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="faces", prompt="", size="1024x1024")
    assert e.value.body["param"] == "size" and "16x16" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="faces", prompt="", extra_body={"label": 1})
    assert e.value.body["param"] == "label"
    t2i = client.images.generate(model="t2i", prompt="a cat", n=1)
    assert decode_png(t2i.data[0].b64_json)[0, 0, 0] == len("a cat")


def test_classify(server):
    r = httpx.post(server.url + "/v1/classify", headers=server.auth(),
                   json={"model": "sentiment", "input": ["good good good", "bad film"]})
    data = r.json()["data"]
    assert r.status_code == 200 and [d["label"] for d in data] == ["pos", "neg"]
    assert all(abs(sum(d["probs"].values()) - 1) < 1e-6 for d in data)


def test_errors_through_the_client(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="x")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", suffix="y")
    assert e.value.body["param"] == "suffix"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x" * 65)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="digits", prompt="x")
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()
