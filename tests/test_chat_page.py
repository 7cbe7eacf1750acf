"""The page's chat view (web/chat.js, web/scripts/chat.py) in Chromium, on SwiftShader.

The model is tiny-chat (conftest.py): a random Qwen2 with ChatML's special tokens and the real
Qwen2.5-Instruct chat template (tests/hfmodels.py). Greedy replies are compared with the
command line's (`python -m webgpt chat --message`, native wgpu), prefill counts with the
conversation's length as transformers' tokenizer renders it. Fixtures are in conftest.py.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import IN_CI, PAGE_TIMEOUT_MS as TIMEOUT_MS, ROOT, PageDriver

MODEL = "tiny-chat"
SYSTEM = "You are terse."
FIRST = "What light through yonder window breaks?"
# Typed as the second message: markup that would run or draw if it reached the DOM as HTML.
# (Short: the conversation must fit the model's 160 positions.)
HTML = "<img src=x onerror=__pwned=1><script>__pwned=2</script>"


class ChatPage(PageDriver):
    """The page (conftest's PageDriver) with the chat's helpers; open() waits until the model
    is in."""

    VIEWPORT = {"width": 1000, "height": 900}

    def open(self, **params):
        return super().open(**params).ready()

    def replies_done(self, count):
        """Wait until `count` assistant messages are there and none is being written."""
        self.page.wait_for_function(
            """n => document.querySelectorAll('#chat-log > .assistant').length === n
                && !document.querySelector('#chat-log .pending')
                && ['done', 'error'].includes(document.documentElement.dataset.state)""",
            arg=count, timeout=TIMEOUT_MS)
        assert self.state() == "done", self.page.text_content("#error")

    def messages(self):
        """[(role, text)] of #chat-log's messages."""
        return [tuple(m) for m in self.page.eval_on_selector_all(
            "#chat-log > *", """els => els.map(e => [
                e.classList.contains('user') ? 'user' : e.classList.contains('assistant')
                ? 'assistant' : e.className, e.querySelector('.content').textContent])""")]

    def stats(self, i):
        """{key: value} of the stats under the i-th message."""
        return super().stats(f"#chat-log > :nth-child({i + 1}) .chat-stats")

    def chat_wheels(self):
        """The Jinja2 and MarkupSafe wheels the page fetched (the worker, and the service
        worker as it saves the page's files once a run has ended)."""
        return sorted({p for p in self.requests if p.startswith(("wheels/jinja2-",
                                                                 "wheels/markupsafe-"))})


@pytest.fixture
def chat_page(pages):
    """chat_page(): a new ChatPage, closed after the test."""
    return lambda: pages(ChatPage)


def cli_chat(folder, message, n, system=None):
    """The reply `python -m webgpt chat --message` prints for greedy decoding (native wgpu)."""
    cmd = [sys.executable, "-m", "webgpt", "chat", "--model", folder, "--message", message,
           "--temperature", "0", "-n", str(n)] + (["--system", system] if system else [])
    r = subprocess.run(cmd, capture_output=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "py")))
    err = r.stderr.decode("utf-8", "replace")
    if r.returncode != 0 and "adapter" in err.lower() and not IN_CI:
        pytest.skip(f"no native WebGPU adapter for the CLI: {err.strip()}")
    assert r.returncode == 0, err
    out = r.stdout.decode("utf-8")  # by hand: text mode would turn a generated "\r" into "\n"
    assert out.endswith("\n")
    return out[:-1]


def template_length(folder, messages):
    """How many tokens `messages` are with the generation prompt (transformers' tokenizer)."""
    from transformers import PreTrainedTokenizerFast

    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"),
                                  eos_token=cfg["eos_token"], pad_token=cfg["pad_token"],
                                  chat_template=cfg["chat_template"])
    return len(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


def test_two_turns_html_stays_text_reload_and_new_chat(chat_page, test_models):
    """Two turns typed and answered (the first greedy reply == the CLI's; the second turn
    prefills only what is new), markup typed as a message stays text, Shift+Enter makes a new
    line, a reload shows the conversation again, New chat clears it (also after a reload).
    Jinja2 and MarkupSafe load only once a chat starts."""
    n = 8
    folder = test_models[MODEL]
    want = cli_chat(folder, FIRST, n, SYSTEM)
    c = chat_page().open(model=MODEL, mode="chat", temperature=0, max_new_tokens=n)
    page = c.page
    assert page.evaluate("document.documentElement.dataset.mode") == "chat"
    assert c.chat_wheels() == []  # no Jinja2 before a chat
    page.fill("#chat-system", SYSTEM)
    page.fill("#chat-input", FIRST)
    page.press("#chat-input", "Enter")
    c.replies_done(1)
    assert c.messages() == [("user", FIRST), ("assistant", want)]
    assert page.input_value("#chat-input") == ""
    first = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST}]
    stats = c.stats(1)
    assert int(stats["prefill tokens"]) == template_length(folder, first), stats
    assert "ms/token" in stats and "stopped" not in stats

    page.fill("#chat-input", HTML)
    page.press("#chat-input", "Shift+Enter")  # a new line, not a send
    page.type("#chat-input", "two")
    assert c.state() == "done"
    page.click("#send")
    c.replies_done(2)
    conversation = c.messages()
    assert conversation[:3] == [("user", FIRST), ("assistant", want), ("user", HTML + "\ntwo")]
    both = first + [{"role": "assistant", "content": want},
                    {"role": "user", "content": HTML + "\ntwo"}]
    prefill = int(c.stats(3)["prefill tokens"])
    assert 0 < prefill <= template_length(folder, both) - template_length(folder, first), prefill
    # The markup is text: no element made from it, no script ran.
    assert page.eval_on_selector_all("#chat-log img, #chat-log script",
                                     "els => els.length") == 0
    assert page.evaluate("window.__pwned") is None
    assert c.chat_wheels() == ["wheels/jinja2-3.1.6-py3-none-any.whl",
                               "wheels/markupsafe-3.0.4-py3-none-any.whl"]

    page.reload()
    c.ready()
    assert c.messages() == conversation
    assert page.input_value("#chat-system") == SYSTEM
    page.click("#new-chat")
    assert c.messages() == []
    page.reload()
    c.ready()
    assert c.messages() == []
    assert c.blocked == [] and c.console_errors == [], (c.blocked, c.console_errors)


def test_stop_regenerate_dropped_turns_and_the_chat_loop_example(chat_page, test_models):
    """Stop ends the reply in flight and keeps what came; Regenerate gives the whole greedy
    reply again (the KV cache after a stop is sound); a conversation past the context drops
    its oldest turn and says so under the reply; the code panel's chat loop example runs."""
    n = 120
    want = cli_chat(test_models[MODEL], FIRST, n, SYSTEM)
    c = chat_page().open(model=MODEL, mode="chat", temperature=0, max_new_tokens=n)
    page = c.page
    page.fill("#chat-system", SYSTEM)
    page.fill("#chat-input", FIRST)
    # Stop is pressed as soon as the reply's first text shows (from inside the page: a busy
    # machine may take longer than the whole reply to carry out a click from the test).
    page.evaluate("""() => { window.__stop = new Promise(resolve => {
        const log = document.getElementById('chat-log');
        const watch = new MutationObserver(() => {
            const text = log.querySelector('.pending .content');
            if (text && text.textContent.length > 0) {
                watch.disconnect();
                document.getElementById('chat-stop').click();
                resolve();
            }
        });
        watch.observe(log, {childList: true, subtree: true, characterData: true});
    }); }""")
    page.click("#send")
    page.evaluate("window.__stop")
    c.replies_done(1)
    partial = c.messages()[1][1]
    assert 0 < len(partial) < len(want) and want.startswith(partial), (partial, want)
    assert page.get_attribute("#chat-log > .assistant", "data-stopped") == "1"
    assert c.stats(1).get("stopped") == "yes"

    page.click("#regenerate")
    c.replies_done(1)
    assert c.messages() == [("user", FIRST), ("assistant", want)]

    # 120 new tokens leave the conversation 80 of the model's 160 positions: the first turn
    # goes, and the note says so.
    page.fill("#chat-input", "And then?")
    page.press("#chat-input", "Enter")
    c.replies_done(2)
    note = page.text_content("#chat-log > .assistant:last-child .chat-note")
    assert "dropped the 2 oldest messages" in note, note

    page.fill("#max_new_tokens", "6")
    page.click("#examples")
    page.click("#examples-list .menu-item[data-path='examples/chat_loop.py']")
    page.click("#run")
    page.wait_for_function("document.documentElement.dataset.state === 'generating'")
    assert c.wait_for_state("done", "error") == "done"
    out = page.text_content("#console")
    assert out.count("> ") >= 3 and out.count("prefill: ") == 3, out
    assert c.blocked == [] and c.console_errors == [], (c.blocked, c.console_errors)


def test_model_without_template_says_so_and_offers_generate(chat_page):
    c = chat_page().open(model="tiny", mode="chat")
    page = c.page
    text = page.text_content("#chat-unavailable")
    assert page.is_visible("#chat-unavailable") and "tiny has no chat template" in text, text
    assert not page.is_visible("#chat-input") and page.is_disabled("#send")
    page.click("#chat-unavailable button")
    assert page.evaluate("document.documentElement.dataset.mode") == "generate"
    assert page.is_visible("#generate") and not page.is_visible("#chat")
    assert "mode=" not in page.url
    page.click("#mode-chat")
    assert page.is_visible("#chat-unavailable") and "mode=chat" in page.url
    assert c.chat_wheels() == []


def test_chat_wheels_are_pinned_and_kept_offline(site):
    """build.py's Jinja2 wheel and the MarkupSafe wheel it builds from the sdist: in the site
    with their pinned sha256, listed in build.json for the worker, in the offline shell, and
    not boot files (Generate never loads them)."""
    import build

    with open(os.path.join(site, "build.json"), encoding="utf-8") as f:
        info = json.load(f)
    assert info["chat_wheels"] == list(build.CHAT_WHEELS)
    with open(os.path.join(site, "sw-shell.js"), encoding="utf-8") as f:
        shell = f.read()
    for name, sha in build.CHAT_WHEELS.items():
        assert build.sha256_file(os.path.join(site, "wheels", name)) == sha
        assert f'"wheels/{name}": "{sha}"' in shell
        assert f"wheels/{name}" not in info["boot_files"]
