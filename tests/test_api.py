"""webgpt.Client in-process (the code the page runs): OpenAI's objects, several models, n
choices, token prompts, echo, log-probs in both of OpenAI's formats, requests that cannot run.
The server's side (HTTP, the `openai` package as the client) is tests/test_server.py's.
"""

import asyncio
import json
import math

import pytest

import hfmodels
import refmodels

import webgpt
from webgpt.api import APIObject, RequestError

MESSAGES = [{"role": "user", "content": "What light through yonder window breaks?"}]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def models(tmp_path_factory, gpu_device):
    base = tmp_path_factory.mktemp("api")
    chat = str(base / "chat")
    hfmodels.write_chat_folder(chat)
    cfg = refmodels.CONFIGS["tiny"]
    gpt2 = refmodels.write_folder(str(base / "gpt2"), cfg, refmodels.make_weights(cfg, 2))
    out = [run(webgpt.load(p, device=gpu_device)) for p in (chat, gpt2)]
    yield out
    for m in out:
        m.release()


def test_objects_read_like_the_openai_packages():
    o = APIObject({"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]})
    assert o.choices[0].message.content == "hi" and o["choices"][0]["message"]["content"] == "hi"
    assert o.model_dump() == json.loads(o.model_dump_json()) == o.to_dict()
    d = o.model_dump()
    d["choices"] = []
    assert o.choices[0].message.content == "hi"      # a copy
    assert o.usage is None and o.choices[0].message.role is None   # optional, as OpenAI's
    with pytest.raises(AttributeError, match="no field 'choises'"):
        o.choises
    with pytest.raises(AttributeError, match="read-only"):
        o.object = "x"


def test_a_client_over_two_models(models):
    client = webgpt.Client(models)
    assert [m.id for m in run(client.models.list())] == ["chat", "gpt2"]

    async def both():
        # Concurrent requests for one model take turns; each gets the reply it asked for.
        a, b = await asyncio.gather(
            client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=5,
                                           temperature=0),
            client.completions.create(model="gpt2", prompt="ROMEO:", max_tokens=5,
                                      temperature=0))
        return a, b, await models[0].chat(MESSAGES, 5, temperature=0)
    a, b, want = run(both())
    assert a.choices[0].message.content == want and a.model == "chat" and b.model == "gpt2"
    with pytest.raises(RequestError, match="this client serves chat, gpt2") as e:
        run(client.completions.create(prompt="x"))
    assert e.value.param == "model"


def test_n_choices_with_a_seed_repeat(models):
    client = webgpt.Client(models[1])

    async def twice():
        kw = dict(prompt="ROMEO:", max_tokens=6, temperature=1.0, n=3, seed=11)
        return await client.completions.create(**kw), await client.completions.create(**kw)
    a, b = run(twice())
    texts = [c.text for c in a.choices]
    assert texts == [c.text for c in b.choices] and len(set(texts)) > 1
    assert a.usage.prompt_tokens == len(models[1].tokenizer.encode("ROMEO:"))
    assert a.usage.completion_tokens == 18


def test_token_prompts_and_echo(models):
    client = webgpt.Client(models[1])
    tok = models[1].tokenizer
    ids = tok.encode("ROMEO: But soft")
    a = run(client.completions.create(prompt=ids, max_tokens=5, temperature=0, echo=True))
    b = run(client.completions.create(prompt="ROMEO: But soft", max_tokens=5, temperature=0))
    assert a.choices[0].text == "ROMEO: But soft" + b.choices[0].text
    batch = run(client.completions.create(prompt=["ROMEO:", "JULIET:"], max_tokens=3,
                                          temperature=0, n=2))
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]


def test_completion_logprobs_in_openais_legacy_format(models):
    client = webgpt.Client(models[1])
    r = run(client.completions.create(prompt="ROMEO:", max_tokens=6, temperature=0, logprobs=2))
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    offsets = [0] + [sum(len(t) for t in lp.tokens[:k]) for k in range(1, 6)]
    assert lp.text_offset == offsets
    for v, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert v <= 0 and math.isclose(max(top.model_dump().values()), v, abs_tol=1e-6)


def test_requests_that_cannot_run(models):
    client = webgpt.Client(models[1])
    long = "ROMEO: " * 200
    for call, param, code in [
        (client.completions.create(prompt=long), "prompt", "context_length_exceeded"),
        (client.completions.create(prompt=[5, 99999]), "prompt", None),
        (client.completions.create(prompt="x", echo=True, logprobs=1), "echo", None),
        (client.completions.create(prompt="x", response_format={"type": "json_object"}),
         "response_format", None),
        (client.chat.completions.create(messages=MESSAGES), "messages", None),   # no template
        (client.chat.completions.create(messages=[{"role": "robot", "content": "x"}]),
         "messages[0].role", None),
    ]:
        with pytest.raises(RequestError) as e:
            run(call)
        assert (e.value.param, e.value.code) == (param, code), str(e.value)


def test_a_stream_left_early_frees_the_model(models):
    client = webgpt.Client(models[0])

    async def go():
        stream = await client.chat.completions.create(messages=MESSAGES, max_tokens=30,
                                                      temperature=0, stream=True)
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                break
        await stream.close()
        # The lock is free and the cache holds only what was read back.
        r = await asyncio.wait_for(client.chat.completions.create(
            messages=MESSAGES, max_tokens=3, temperature=0), 60)
        return r
    assert run(go()).choices[0].message.content is not None


def test_a_models_name_is_its_folders_or_files():
    from types import SimpleNamespace

    from webgpt.model.generator import model_name
    from webgpt.sources import LocalSource

    folder = SimpleNamespace(gguf=None, source=LocalSource("/x/weights/SmolLM2-135M-Instruct/"))
    assert model_name(folder) == "SmolLM2-135M-Instruct"
    for files, name in ((["Llama-3.2-1B-Instruct-Q4_K_M.gguf"], "Llama-3.2-1B-Instruct-Q4_K_M"),
                        (["big-Q8_0-00001-of-00003.gguf", "big-Q8_0-00002-of-00003.gguf"],
                         "big-Q8_0")):
        assert model_name(SimpleNamespace(gguf={"files": files}, source=None)) == name
