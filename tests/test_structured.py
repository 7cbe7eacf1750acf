"""Structured output (webgpt.constrain): JSON schemas, regular expressions and EBNF grammars
constrained token by token.

- a corpus of schemas, simple to nested: seeded random walks over GPT-2's real vocabulary,
  each step drawing among the tokens the mask allows; every output parses and validates with
  `jsonschema` (format checks on);
- each mask equals a brute-force one (every token's bytes run through the automaton);
- adversarial schemas: recursion, a huge enum, impossible ones (a sentence, no hang), refused
  keywords;
- tokenizer edge cases: tokens that end mid-escape, a multi-byte character split across
  tokens, special tokens never inside a value;
- the reference: lm-format-enforcer's token sets equal ours at every step of a greedy run, and
  transformers' greedy generation under lm-format-enforcer gives our GPU run's tokens;
- the OpenAI-shaped API: response_format, regex and grammar on a model.
"""

import asyncio
import json
import random
import time

import numpy as np
import pytest

import hfmodels

import webgpt
from webgpt import constrain
from webgpt.constrain.automaton import DEAD
from webgpt.constrain.schema import MAX_INDENT
from webgpt.errors import ConstraintError
from webgpt.tokenizer import Tokenizer

jsonschema = pytest.importorskip("jsonschema", reason="the schema corpus validates with jsonschema "
                                                      "(requirements-test.txt)")

GPT2 = Tokenizer.gpt2()
EOT = GPT2.eot_id

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20},
    "age": {"type": "integer", "minimum": 0, "maximum": 130},
    "email": {"type": "string", "format": "email"}}, "required": ["name", "age"]}

CORPUS = [
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "null"},
    {"enum": ["red", "green", "blue"]},
    {"const": {"a": [1, 2, None]}},
    {"type": ["string", "null"]},
    {"type": "integer", "minimum": -40, "maximum": 45},
    {"type": "integer", "exclusiveMinimum": 7, "exclusiveMaximum": 1234},
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "number", "minimum": -5, "exclusiveMaximum": 3},
    {"type": "string", "minLength": 3, "maxLength": 5},
    {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
    {"type": "string", "pattern": "^ab+c"},
    {"type": "string", "format": "date"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "format": "ipv4"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
    {"type": "array", "items": {"enum": [1, "two", 3.5, True]}},
    {"type": "object"},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    PERSON,
    {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                                      "c": {"type": "string"}}},
    {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {
        "type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
     "required": ["id", "tags"], "additionalProperties": False},
    {"type": "object", "properties": {"owner": PERSON, "pets": {"type": "array", "items": {
        "type": "object", "properties": {"kind": {"enum": ["cat", "dog"]},
                                         "age": {"type": "integer", "minimum": 0}},
        "required": ["kind"]}}}, "required": ["owner"]},
    {"anyOf": [{"type": "integer"}, {"type": "object", "properties": {"x": {"type": "null"}},
                                     "required": ["x"]}]},
    {"oneOf": [{"type": "boolean"}, {"type": "string", "maxLength": 2}]},
    {"$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"},
                                                          "y": {"type": "number"}},
                         "required": ["x", "y"]}},
     "type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 3},
    {"type": "object", "properties": {"value": {"type": "integer"}, "next": {"$ref": "#"}},
     "required": ["value"]},
    {"type": "object", "properties": {"escaped": {"type": "string", "pattern": '^[a"\\\\\n]{2,4}$'}},
     "required": ["escaped"]},
    {"allOf": [{"type": "object", "properties": {"k": {"const": "v"}}, "required": ["k"]}]},
    {"type": "object", "properties": {"matrix": {"type": "array", "items": {
        "type": "array", "items": {"type": "number", "minimum": 0, "maximum": 9},
        "minItems": 2, "maxItems": 2}, "minItems": 1, "maxItems": 2}}, "required": ["matrix"]},
]

CLOSERS = tuple(b'"]},:')


def allowed(mask):
    """The token ids set in a mask."""
    return np.flatnonzero(np.unpackbits(np.frombuffer(mask, np.uint8), bitorder="little"))


def brute_force(c):
    """The allowed ids of a Constraint's state, each token's bytes run through its automaton."""
    a, vocab = c.automaton, c.vocab
    out = {t for data, t in vocab.tokens if a.advance(c.state, data) != DEAD}
    out |= {t for t, s in a.symbols(c.state).items() if s != DEAD}
    if a.accepting(c.state):
        out |= set(c.stop_ids)
    return out


def closing_weights(tokenizer, stop_ids):
    """Per token, how much a random walk favours it: the stop tokens and those that start by
    closing a string, object or array 40 times more than others, so that outputs end."""
    w = np.ones(tokenizer.vocab_size)
    for t in range(tokenizer.vocab_size):
        if t in stop_ids or any(b in CLOSERS for b in tokenizer.token_bytes(t)[:2]):
            w[t] = 40
    return w


WEIGHTS = {}


def random_output(c, rng, tokenizer=GPT2, steps=400, check_every=0):
    """A random output of Constraint `c`: each token drawn among the allowed ones (see
    closing_weights). Returns the text."""
    key = (id(tokenizer), c.stop_ids)
    if key not in WEIGHTS:
        WEIGHTS[key] = closing_weights(tokenizer, c.stop_ids)
    weights = WEIGHTS[key]
    ids, out = [0], []
    for k in range(steps):
        mask = c.mask(ids)
        ids_allowed = allowed(mask)
        assert len(ids_allowed), f"no token allowed after {tokenizer.decode(out)!r}"
        if check_every and k % check_every == 0:
            assert set(ids_allowed.tolist()) == brute_force(c)
        cumulative = np.cumsum(weights[ids_allowed])
        token = int(ids_allowed[np.searchsorted(cumulative, rng.random() * cumulative[-1],
                                                side="right")])
        if token in c.stop_ids:
            return tokenizer.decode(out)
        ids.append(token)
        out.append(token)
    raise AssertionError(f"no end after {steps} tokens: {tokenizer.decode(out)!r}")


@pytest.mark.parametrize("k", range(len(CORPUS)))
def test_random_outputs_validate(k):
    schema = CORPUS[k]
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    c = constrain.json_schema(GPT2, schema, stop_ids=[EOT])
    rng = random.Random(k)
    for run in range(3):
        text = random_output(c.fresh(), rng, check_every=7 if run == 0 and k % 5 == 0 else 0)
        value = json.loads(text)
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (text, errors)


def test_json_object_and_whitespace():
    c = constrain.json_object(GPT2, stop_ids=[EOT])
    rng = random.Random(5)
    for _ in range(5):
        text = random_output(c.fresh(), rng)
        assert isinstance(json.loads(text), dict)
        # Blanks are bounded: never two spaces but after a newline (indent), never "\n\n".
        assert "\n\n" not in text and " " * (MAX_INDENT + 1) not in text


def test_one_constraint_serves_generations_one_after_another():
    c = constrain.regex(GPT2, "(ab|cd)!", stop_ids=[EOT])
    first = [GPT2.encode(t)[0] for t in ("ab", "!")]
    for prompt in ([5, 6], [5, 6], [7]):      # the same prompt again, then another
        assert set(allowed(c.mask(prompt)).tolist()) == set(
            allowed(c.fresh().mask(prompt)).tolist())
        c.mask(prompt + first[:1])
        assert EOT in allowed(c.mask(prompt + first))


def test_the_stop_token_only_when_complete():
    c = constrain.json_schema(GPT2, {"type": "array", "items": {"type": "integer"}},
                              stop_ids=[EOT])
    ids = [0]
    assert EOT not in allowed(c.mask(ids))
    for piece in ("[", "1", "]"):
        ids.append(GPT2.encode(piece)[0])
        m = allowed(c.mask(ids))
    assert EOT in m and c.complete


# ---------------------------------------------------------------- adversarial schemas

def test_recursion_nests_and_ends():
    tree = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3},
                                             "children": {"type": "array",
                                                          "items": {"$ref": "#"}}},
            "required": ["name", "children"]}
    c = constrain.json_schema(GPT2, tree, stop_ids=[EOT])
    rng = random.Random(2)
    texts = [random_output(c.fresh(), rng, steps=1500) for _ in range(4)]
    for text in texts:
        jsonschema.validate(json.loads(text), tree)
    deep = {"name": "a", "children": []}
    for _ in range(12):     # nesting as deep as a model would write, accepted
        deep = {"name": "b", "children": [deep, {"name": "c", "children": []}]}
    a = c.automaton
    assert a.accepting(a.advance(a.start, json.dumps(deep, separators=(",", ":")).encode()))


def test_a_huge_enum():
    words = [f"w{i:05d}" for i in range(20000)]
    t0 = time.perf_counter()
    c = constrain.json_schema(GPT2, {"enum": words}, stop_ids=[EOT])
    text = random_output(c, random.Random(1))
    assert json.loads(text) in words
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("schema, words", [
    ({"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]},
     "no output can satisfy"),
    ({"type": "array", "minItems": 3, "maxItems": 2}, "no array"),
    ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer"),
    ({"type": "string", "minLength": 9, "maxLength": 1}, "no string"),
    ({"enum": []}, "non-empty"),
    (False, "no output can satisfy"),
    ({"type": "object", "required": ["x"], "properties": {}}, "'x'"),
    ({"type": "string", "format": "hostname"}, "'hostname'"),
    ({"type": "integer", "multipleOf": 3}, "'multipleOf'"),
    ({"not": {"type": "null"}}, "'not'"),
    ({"type": "array", "uniqueItems": True}, "'uniqueItems'"),
    ({"$ref": "https://example.com/s.json"}, "only references within"),
    ({"type": "number", "maximum": 2.5}, "whole numbers"),
    ({"type": "strin"}, "type must be one of"),
    ({"type": "string", "pattern": "(?=a)b"}, "look-around"),
])
def test_impossible_or_refused_schemas_say_why(schema, words):
    t0 = time.perf_counter()
    with pytest.raises(ConstraintError, match=words.replace("(", r"\(")):
        constrain.json_schema(GPT2, schema, stop_ids=[EOT])
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------- tokenizer edge cases

class ByteTokens:
    """A tokenizer of given byte strings (ids in order), the last one special (eot)."""

    def __init__(self, pieces, specials=()):
        self.pieces = list(pieces) + [s.encode() for s in specials]
        self.vocab_size = len(self.pieces)
        self.special_ids = set(range(len(pieces), self.vocab_size))
        self.eot_id = self.vocab_size - 1 if specials else None

    def token_bytes(self, i):
        return self.pieces[i]

    def id(self, data):
        return self.pieces.index(data)


EDGE = ByteTokens([b'"', b"a", b"\\", b'\\"', b"n", b"u00", b"e9", b"\xc3", b"\xa9",
                   b"\xc3\xa9", b'a"', b"\\u", b"00e9", b"\xe2\x82", b"\xac", b"q", b"{",
                   b"}", b'{"', b'":', b"<|im_end|>"], specials=["<|im_end|>", "<|eot|>"])


def step(c, pieces):
    ids = [0]
    c.mask(ids)
    for p in pieces:
        ids.append(EDGE.id(p))
        got = {EDGE.pieces[t] for t in allowed(c.mask(ids))}
    return got


def test_tokens_that_end_mid_escape():
    c = constrain.json_schema(EDGE, {"type": "string"}, stop_ids=[EDGE.eot_id])
    # After a backslash: an escape's letter, alone or with what follows it (\" then :, \\
    # then a quote that closes the string), never a plain letter.
    assert step(c, [b'"', b"\\"]) == {b'"', b'":', b"\\", b'\\"', b"\\u", b"n", b"u00"}
    # "\u" then the four hex digits across two tokens.
    c = c.fresh()
    assert step(c, [b'"', b"\\u"]) == {b"00e9", b"e9", b"a"}      # hex digits only
    c = c.fresh()     # "\u00" then two more hex digits (and plain characters after them)
    assert step(c, [b'"', b"\\", b"u00"]) == {b"e9", b"00e9", b"a"}


def test_a_character_split_across_tokens():
    c = constrain.json_schema(EDGE, {"type": "string", "maxLength": 1},
                              stop_ids=[EDGE.eot_id])
    assert step(c, [b'"', b"\xc3"]) == {b"\xa9", b"\xac"}    # only continuation bytes
    assert step(c.fresh(), [b'"', b"\xc3", b"\xa9"]) == {b'"'}    # one character: the end
    c = constrain.json_schema(EDGE, {"type": "string", "maxLength": 2},
                              stop_ids=[EDGE.eot_id])
    assert b"\xe2\x82" in step(c, [b'"', b"\xc3\xa9"])
    assert step(c.fresh(), [b'"', b"\xc3\xa9", b"\xe2\x82"]) == {b"\xa9", b"\xac"}


def test_special_tokens_never_inside_a_value():
    c = constrain.json_schema(EDGE, {"type": "string"}, stop_ids=[EDGE.eot_id])
    inside = step(c, [b'"', b"a"])
    assert b"<|im_end|>" in inside      # the plain token with that text (a string may hold it)
    ids = {EDGE.vocab_size - 2, EDGE.vocab_size - 1}
    bits = c.mask([0, EDGE.id(b'"'), EDGE.id(b"a")])
    assert not ids & set(allowed(bits).tolist())
    with pytest.raises(ValueError, match="cannot come here"):
        c.feed(EDGE.vocab_size - 2)


# ---------------------------------------------------------------- regular expressions, EBNF

@pytest.mark.parametrize("pattern, good, bad", [
    (r"(yes|no)!", ["yes!", "no!"], ["yes", "maybe!"]),
    (r"[A-Z][a-z]{1,3} \d+(\.\d\d)?", ["Ab 12", "Abcd 3.50"], ["ab 1", "A 1", "Ab 1.5"]),
    (r"[^,\n]{1,8}(,[^,\n]{1,8}){0,3}", ["a,b", "é,ü"], [",a", "a,,b"]),
    (r"\w{1,6}@\w{1,6}\.(com|org)", ["me@x.org"], ["me@x.net"]),
])
def test_regex(pattern, good, bad):
    import re

    c = constrain.regex(GPT2, pattern, stop_ids=[EOT])
    for text in [random_output(c.fresh(), random.Random(i)) for i in range(5)]:
        assert re.fullmatch(pattern, text), text
    for text, fits in [(t, True) for t in good] + [(t, False) for t in bad]:
        state = c.automaton.advance(c.automaton.start, text.encode())
        assert (state != DEAD and c.automaton.accepting(state)) == fits, text


GBNF = r"""
root   ::= item ("," ws item){0,3}
item   ::= "yes" | "no" | num | "[" root "]"   # nested lists
num    ::= [1-9] [0-9]?
ws     ::= [ ]?
"""

LARK = r"""
start: greeting name ["!"]
greeting: "Hello, " | "Hi, "
name: /[A-Z][a-z]{1,6}/ ~ 1..2
"""


def test_gbnf_and_lark_grammars():
    import re

    c = constrain.grammar(GPT2, GBNF, stop_ids=[EOT])
    item = r"(yes|no|[1-9][0-9]?|\[.*\])"
    for i in range(5):
        text = random_output(c.fresh(), random.Random(i))
        assert re.fullmatch(rf"{item}(, ?{item}){{0,3}}", text) and text.count("[") == \
            text.count("]"), text
    c = constrain.grammar(GPT2, LARK, stop_ids=[EOT])
    for i in range(5):
        text = random_output(c.fresh(), random.Random(i))
        assert re.fullmatch(r"(Hello|Hi), ([A-Z][a-z]{1,6}){1,2}!?", text), text
    for bad, words in [("root ::= x", "no rule 'x'"), ("start: 'a' | %ignore", "directive"),
                       ("root ::= \"a\" (", "not closed"), ("start: x\nx: x", "recurse")]:
        with pytest.raises(ConstraintError, match=words):
            constrain.grammar(GPT2, bad, stop_ids=[EOT])


# ---------------------------------------------------------------- the reference decoder

def write_long_chat_folder(path):
    """hfmodels' instruct-shaped folder with a context of 2048 (room for tools in the prompt).
    Returns (the transformers model, [eos ids])."""
    _, ends = hfmodels.write_chat_folder(path)
    hf = hfmodels.hf_model("Qwen2ForCausalLM", dict(hfmodels.CHAT_KEYS,
                                                     max_position_embeddings=2048), 3,
                           vocab_size=320)
    hf.save_pretrained(path)
    return hf, ends


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, gpu_device):
    path = str(tmp_path_factory.mktemp("structured") / "chat")
    hf, ends = write_long_chat_folder(path)
    model = asyncio.run(webgpt.load(path, device=gpu_device))
    yield path, hf, ends, model
    model.release()


def lmfe_enforcer(path, parser, eos):
    """lm-format-enforcer's TokenEnforcer for the folder's tokenizer.json, built from the
    `tokenizers` library (the reference side: none of our tokenizer code)."""
    lmfe = pytest.importorskip("lmformatenforcer", reason="the reference constrained decoder "
                                                         "(requirements-test.txt)")
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(f"{path}/tokenizer.json")
    special = {tok.token_to_id(s) for s in hfmodels.CHAT_SPECIALS}
    zero = tok.encode("0").ids[-1]
    regular = []
    for i in range(tok.get_vocab_size()):
        if i in special:
            continue
        after_zero = tok.decode([zero, i])[1:]
        regular.append((i, after_zero, len(after_zero) > len(tok.decode([i]))))
    data = lmfe.TokenEnforcerTokenizerData(regular, lambda ids: tok.decode(ids).rstrip("\ufffd"),
                                           eos, False, tok.get_vocab_size())
    return lmfe.TokenEnforcer(data, parser)


REFERENCE_REGEX = r"(yes|no|maybe) [0-9]{2,4}( and (cats|dogs))?\."


def test_greedy_equals_transformers_with_lm_format_enforcer(chat_model):
    """On the same model (transformers' and ours from its folder), greedy under the same regex:
    the tokens lm-format-enforcer allows equal ours at every step, and transformers' greedy
    generate() with it as prefix_allowed_tokens_fn gives our GPU run's tokens."""
    import torch
    from lmformatenforcer import RegexParser

    path, hf, ends, model = chat_model
    eos = ends[0]
    enforcer = lmfe_enforcer(path, RegexParser(REFERENCE_REGEX), eos)
    prompt = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Yes or no?"}], add_generation_prompt=True)
    ours = constrain.regex(model, REFERENCE_REGEX, stop_ids=[eos])
    got = asyncio.run(model.generate_ids(prompt, 40, temperature=0, constraint=ours.fresh()))

    def allowed_ids(batch, ids):
        return enforcer.get_allowed_tokens(ids.tolist()).allowed_tokens

    want = hf.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                       prefix_allowed_tokens_fn=allowed_ids, eos_token_id=eos,
                       pad_token_id=eos)[0, len(prompt):].tolist()
    print("ours", model.tokenizer.decode(got), "reference", model.tokenizer.decode(want))
    assert got == want
    # Every step's token set, along the greedy path.
    c = ours.fresh()
    ids = list(prompt)
    for token in got:
        mine = set(allowed(c.mask(ids)).tolist())
        theirs = set(enforcer.get_allowed_tokens(ids).allowed_tokens)
        assert mine == theirs, [model.tokenizer.token_bytes(t) for t in mine ^ theirs]
        ids.append(token)


# ---------------------------------------------------------------- the API

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 6},
    "color": {"enum": ["red", "green"]},
    "sizes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99},
              "maxItems": 3}}, "required": ["name", "color", "sizes"],
    "additionalProperties": False}


def test_response_format_through_the_client(chat_model):
    model = chat_model[3]
    client = webgpt.Client(model)
    messages = [{"role": "user", "content": "A?"}]

    async def go():
        fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA,
                                                      "strict": True}}
        whole = await client.chat.completions.create(
            messages=messages, max_tokens=100, temperature=1.0, seed=4, n=3, response_format=fmt)
        stream = await client.chat.completions.create(
            messages=messages, max_tokens=100, temperature=1.0, seed=4, response_format=fmt,
            stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream])
        plain = await client.chat.completions.create(
            messages=messages, max_tokens=30, temperature=0, response_format={"type": "text"})
        regex = await client.completions.create(prompt="ROMEO", max_tokens=20, temperature=0.9,
                                                seed=1, regex="[a-z]{3,5}( [a-z]{2,4})?")
        grammar = await client.chat.completions.create(
            messages=messages, max_tokens=20, temperature=0.9, seed=1,
            grammar='root ::= ("ab" | "cd") [0-9]')
        return whole, streamed, plain, regex, grammar
    whole, streamed, plain, regex, grammar = asyncio.run(go())
    texts = [c.message.content for c in whole.choices]
    for text in texts:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert streamed == texts[0] and all(c.finish_reason == "stop" for c in whole.choices)
    assert plain.choices[0].message.content is not None
    import re
    assert re.fullmatch("[a-z]{3,5}( [a-z]{2,4})?", regex.choices[0].text)
    assert re.fullmatch("(ab|cd)[0-9]", grammar.choices[0].message.content)


def test_bad_structured_requests_name_the_parameter(chat_model):
    client = webgpt.Client(chat_model[3])
    m = [{"role": "user", "content": "A?"}]
    for kw, param in [
        (dict(response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "integer", "multipleOf": 2}}}), "response_format"),
        (dict(response_format={"type": "xml"}), "response_format"),
        (dict(regex="(a"), "regex"),
        (dict(grammar="root ::= nothing"), "grammar"),
        (dict(regex="a", grammar='root ::= "a"'), "regex"),
    ]:
        with pytest.raises(webgpt.RequestError) as e:
            asyncio.run(client.chat.completions.create(messages=m, max_tokens=5, **kw))
        assert e.value.param == param, str(e.value)
