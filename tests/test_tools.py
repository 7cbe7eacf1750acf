"""Tool calling (webgpt/api/tools.py): each family's call format through its real chat template
(tests/fixtures/chat_templates: Qwen2.5-Instruct, Qwen3, Llama-3.2-Instruct, SmolLM2 and
SmolLM3), the calls' constraint, the calls parsed back, function_tool, and the API and the
server with tools and response_format from the `openai` package.
"""

import asyncio
import json
import os

import pytest

from test_chat_template import reference
from test_server import Server
from test_structured import GPT2, allowed, write_long_chat_folder

import webgpt
from webgpt import constrain
from webgpt.api import tools as api_tools
from webgpt.api.params import chat_request
from webgpt.chat_template import render_chat_template
from webgpt.constrain.automaton import DEAD

jsonschema = pytest.importorskip("jsonschema", reason="tool arguments are validated with "
                                                      "jsonschema (requirements-test.txt)")

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                         "chat_templates")
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "pattern": "^[A-Z][a-z]{1,7}$"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "a + b",
    "parameters": {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 0, "maximum": 99},
        "b": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "b"]}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]


class Template:
    """What tool_format and the renderer read of a tokenizer: its chat template."""

    def __init__(self, name):
        with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
            self.chat_template = f.read()


# (template file, format, a call as the model writes it in that format)
FAMILIES = [
    ("qwen2.5-instruct.jinja", api_tools.HERMES,
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n'
     '</tool_call>'),
    ("qwen3.jinja", api_tools.HERMES,
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n'
     '</tool_call>'),
    ("llama-3.2-instruct.jinja", api_tools.LLAMA3_JSON,
     '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}'),
    ("smollm3-3b.jinja", api_tools.HERMES,
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n'
     '</tool_call>'),
    ("smollm2-instruct.jinja", api_tools.SMOLLM2,
     '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]'
     '</tool_call>'),
]


@pytest.mark.parametrize("name, fmt, call_text", FAMILIES)
def test_a_call_round_trips_through_the_template(name, fmt, call_text):
    template = Template(name)
    assert api_tools.tool_format(template) == fmt
    r = chat_request({"messages": QUESTION, "tools": [WEATHER, ADD], "tool_choice": "auto"})
    # The call's text is in the language of the calls' constraint...
    grammar = api_tools.call_grammar(r.tools, fmt, "required")
    a = constrain.Automaton(constrain.Program(grammar))
    assert a.accepting(a.advance(a.start, call_text.encode()))
    assert a.advance(a.start, call_text.replace('"c"', '"k"').encode()) == DEAD
    # ... it parses back into OpenAI's tool_calls ...
    content, calls = api_tools.parse_calls(call_text, fmt, r.tools)
    assert content is None and len(calls) == 1
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "c"}
    # ... and the conversation with it and the tool's result renders as the model was trained:
    # the tools in the prompt, the call written as the model writes it, the result after it.
    later = chat_request({"messages": QUESTION + [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18 C, sunny"}],
        "tools": [WEATHER, ADD]})
    rendered = api_tools.renders_tools(template)
    messages = api_tools.template_messages(later.messages, later.tools, fmt, rendered)
    extra = {"tools": api_tools.template_tools(later.tools)} if rendered else {}
    text = render_chat_template(template.chat_template, messages, add_generation_prompt=True,
                                bos_token="<|begin_of_text|>", **extra)
    assert call_text in text and "18 C, sunny" in text and '"name": "add"' in text, text
    # The tools reach the template as transformers passes them: its render is the same.
    assert text == reference(template.chat_template, messages, bos_token="<|begin_of_text|>",
                             add_generation_prompt=True, **extra)


@pytest.mark.parametrize("text, fmt, want", [
    ('Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "f"}}\n'
     '</tool_call>', api_tools.HERMES, ("Sure.", ["add", "get_weather"])),
    ('<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>', api_tools.HERMES,
     (None, [])),
    ('<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}', api_tools.LLAMA3_JSON,
     (None, ["add"])),
    ("It is sunny.", api_tools.LLAMA3_JSON, ("It is sunny.", [])),
    ('<tool_call>[{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", '
     '"arguments": {"a": 3, "b": 4}}]</tool_call>', api_tools.SMOLLM2, (None, ["add", "add"])),
    ("<tool_call>{broken</tool_call>", api_tools.HERMES, (None, [])),
])
def test_calls_parse_back(text, fmt, want):
    r = chat_request({"messages": QUESTION, "tools": [WEATHER, ADD]})
    content, calls = api_tools.parse_calls(text, fmt, r.tools)
    names = [c["function"]["name"] for c in calls]
    assert names == want[1]
    if calls:
        assert content == want[0]
        assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    else:
        assert content == text


def test_auto_is_free_until_the_marker():
    r = chat_request({"messages": QUESTION, "tools": [WEATHER]})

    class QwenShaped:       # GPT-2's vocabulary, Qwen2.5's template: the hermes format
        chat_template = Template("qwen2.5-instruct.jinja").chat_template

        def __getattr__(self, name):
            return getattr(GPT2, name)

    class Model:
        tokenizer = QwenShaped()

        def stopping_ids(self):
            return {GPT2.eot_id}

    c = api_tools.tool_constraint(Model(), r.tools, "auto", None)
    ids = [0]
    free = allowed(c.mask(ids))
    assert len(free) == GPT2.vocab_size       # free text: every token
    for piece in ["I will check.", "<", "tool", "_", "call", ">"]:
        ids += GPT2.encode(piece)
        mask = c.mask(ids)
    after = {GPT2.token_bytes(int(t)) for t in allowed(mask)}
    assert after == {b"\n"} | ({b"\n\n"} & after)     # the call's format from here on
    for piece in ['\n{"name": "get_weather", "arguments": {"city": "Rome", "unit": ']:
        for t in GPT2.encode(piece):
            ids.append(t)
            mask = c.mask(ids)
    assert {GPT2.decode([int(t)]) for t in allowed(mask)} >= {'"'}
    assert GPT2.encode(' "k"')[0] not in allowed(mask)


def test_function_tool_from_hints_and_docstring():
    from typing import Literal, Optional

    @webgpt.function_tool
    def book(city: str, nights: int, breakfast: bool = False,
             room: Literal["single", "double"] = "single", notes: Optional[str] = None,
             guests: list[str] = ()):
        """Book a hotel room.

        Args:
            city: where to stay
            nights (int): how many nights
        """
        return {"city": city, "nights": nights, "room": room, "guests": list(guests)}

    f = book.schema["function"]
    assert f["name"] == "book" and f["description"] == "Book a hotel room."
    p = f["parameters"]
    assert p["required"] == ["city", "nights"]
    assert p["properties"]["city"] == {"type": "string", "description": "where to stay"}
    assert p["properties"]["room"] == {"enum": ["single", "double"]}
    assert p["properties"]["guests"] == {"type": "array", "items": {"type": "string"}}
    assert p["properties"]["notes"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    constrain.json_schema(GPT2, p, stop_ids=[GPT2.eot_id])      # a schema the engine takes
    call = {"id": "call_1", "type": "function", "function": {
        "name": "book", "arguments": '{"city": "Oslo", "nights": 2, "guests": ["A"]}'}}
    assert json.loads(book.run(call)) == {"city": "Oslo", "nights": 2, "room": "single",
                                          "guests": ["A"]}
    with pytest.raises(TypeError, match="no JSON schema"):
        webgpt.function_tool(_takes_a_complex_number)


def _takes_a_complex_number(x: complex):
    return x


# ---------------------------------------------------------------- on a model, and the server

@pytest.fixture(scope="module")
def folder(tmp_path_factory, adapter):
    path = str(tmp_path_factory.mktemp("tools") / "tool-chat")
    write_long_chat_folder(path)
    return path


@pytest.fixture(scope="module")
def model(folder, gpu_device):
    m = asyncio.run(webgpt.load(folder, device=gpu_device))
    yield m
    m.release()


def check_calls(message, names):
    assert [c.function.name for c in message.tool_calls] == names
    for call in message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_tool_choice_through_the_client(model):
    client = webgpt.Client(model)

    async def go():
        kw = dict(messages=QUESTION, tools=[WEATHER, ADD], max_tokens=120, temperature=0.8)
        required = await client.chat.completions.create(tool_choice="required", seed=1,
                                                         parallel_tool_calls=False, **kw)
        named = await client.chat.completions.create(
            tool_choice={"type": "function", "function": {"name": "add"}}, seed=2, n=2, **kw)
        none = await client.chat.completions.create(tool_choice="none", seed=3, **kw)
        stream = await client.chat.completions.create(
            tool_choice={"type": "function", "function": {"name": "get_weather"}}, seed=4,
            stream=True, logprobs=True, **kw)
        chunks = [c async for c in stream]
        # The result goes back through the template, and the model answers.
        call = required.choices[0].message
        follow = await client.chat.completions.create(
            messages=QUESTION + [call.model_dump(), {"role": "tool", "tool_call_id":
                                                      call.tool_calls[0].id, "content": "18 C"}],
            tools=[WEATHER, ADD], tool_choice="none", max_tokens=5, temperature=0)
        return required, named, none, chunks, follow
    required, named, none, chunks, follow = asyncio.run(go())
    assert required.choices[0].finish_reason == "tool_calls"
    assert len(required.choices[0].message.tool_calls) == 1
    check_calls(required.choices[0].message, [required.choices[0].message.tool_calls[0]
                                              .function.name])
    for choice in named.choices:
        assert choice.finish_reason == "tool_calls"
        check_calls(choice.message, ["add"] * len(choice.message.tool_calls))
    assert none.choices[0].message.tool_calls is None
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    streamed = [d.tool_calls for d in deltas if d.tool_calls]
    assert len(streamed) == 1 and streamed[0][0].function.name == "get_weather", [json.dumps(c.model_dump()["choices"]) for c in chunks][-3:]
    assert streamed[0][0].index == 0 and chunks[-1].choices[0].finish_reason == "tool_calls"
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs
               for e in c.choices[0].logprobs.content]
    assert "".join(e.token for e in entries).startswith('<tool_call>\n{"name": "get_weather"')
    assert follow.usage.prompt_tokens > required.usage.prompt_tokens
    assert "<tool_response>\n18 C\n</tool_response>" in model.tokenizer.decode(
        model.cached_ids)


def test_bad_tool_requests_name_the_parameter(model):
    client = webgpt.Client(model)
    for kw, param in [
        (dict(tools=[{"type": "function", "function": {"name": "no spaces"}}]), "tools"),
        (dict(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
        (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}),
         "tool_choice"),
        (dict(tool_choice="required"), "tool_choice"),
        (dict(tools=[WEATHER], response_format={"type": "json_object"}), "response_format"),
        (dict(tools=[{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {"x": {"not": {}}}}}}],
              tool_choice="required"), "tools"),
        (dict(functions=[{"name": "f"}]), "functions"),
    ]:
        with pytest.raises(webgpt.RequestError) as e:
            asyncio.run(client.chat.completions.create(messages=QUESTION, max_tokens=5, **kw))
        assert e.value.param == param, str(e.value)


def test_the_server_takes_response_format_and_tools(folder):
    openai = pytest.importorskip("openai", reason="the openai package (requirements-test.txt)")
    server = Server(folder)
    try:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
        schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                                   "score": {"type": "integer", "minimum": 1,
                                                             "maximum": 5}},
                  "required": ["answer", "score"], "additionalProperties": False}
        r = client.chat.completions.create(
            model="tool-chat", messages=QUESTION, max_tokens=40, temperature=0.7, seed=3,
            response_format={"type": "json_schema", "json_schema": {
                "name": "verdict", "schema": schema, "strict": True}})
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
        r = client.chat.completions.create(model="tool-chat", messages=QUESTION, max_tokens=120,
                                           temperature=0.7, seed=3, tools=[WEATHER, ADD],
                                           tool_choice="required")
        assert r.choices[0].finish_reason == "tool_calls"
        call = r.choices[0].message.tool_calls[0]
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        r = client.chat.completions.create(model="tool-chat", messages=QUESTION, max_tokens=10,
                                           extra_body={"regex": "(yes|no)!"})
        assert r.choices[0].message.content in ("yes!", "no!")
        with pytest.raises(openai.BadRequestError, match="multipleOf"):
            client.chat.completions.create(
                model="tool-chat", messages=QUESTION, max_tokens=5, response_format={
                    "type": "json_schema", "json_schema": {
                        "name": "x", "schema": {"type": "integer", "multipleOf": 2}}})
    finally:
        server.close()


def test_the_readmes_example_runs_as_written(folder, capsys):
    """README's structured-output and tools example, on the test's model in place of
    SmolLM2: it runs, its JSON validates, its call is one the tool takes."""
    readme = open(os.path.join(os.path.dirname(TEMPLATES), "..", "..", "README.md"),
                  encoding="utf-8").read()
    blocks = readme.split("```python\n")
    code = next(b.split("```")[0] for b in blocks if "function_tool" in b)
    assert 'webgpt.load("weights/SmolLM2-135M-Instruct")' in code
    exec(compile(code.replace("weights/SmolLM2-135M-Instruct", folder), "README.md", "exec"),
         {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    flag = eval(lines[0], {})           # the printed dict
    assert set(flag) == {"country", "colors"} and 1 <= len(flag["colors"]) <= 3
    name, arguments = lines[1].split(" ", 1)
    assert name == "add" and set(json.loads(arguments)) == {"a", "b"}
