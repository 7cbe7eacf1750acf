"""The page's code editor, driven in Chromium as a user would: type, run, read the console.

The editor is #editor (CodeMirror), Run is #run, the console #console; every finished run
adds one to #console's data-runs and sets its data-status (ok, error or stopped). The page is
served by build.py's server, which sends the COOP/COEP headers (cross-origin isolation), so
Stop can interrupt any Python; the last test serves it without them. Fixtures: conftest.py.
"""

import ast
import hashlib
import json
import os
import time
import urllib.request
import zipfile

import pytest

from conftest import PAGE_TIMEOUT_MS as TIMEOUT_MS, PageDriver

MODEL = "tiny"


class Page(PageDriver):
    """The page (conftest's PageDriver) with the editor's helpers; open() waits until the
    model is in and the editor shows its file."""

    VIEWPORT = {"width": 1200, "height": 1000}

    def __init__(self, browser, base, **options):
        super().__init__(browser, base, **{"accept_downloads": True, **options})

    def open(self, **params):
        super().open(**{"model": MODEL, **params})
        return self.ready()

    def ready(self):
        super().ready()
        self.page.wait_for_selector("#editor .cm-content")
        return self

    # the editor

    def view(self, expr):
        """Evaluate `expr` with `view`, the editor's CodeMirror EditorView."""
        return self.page.evaluate(
            "async expr => { const { EditorView } = await import('./editor.js');"
            " const view = EditorView.findFromDOM(document.getElementById('editor'));"
            " return eval(expr); }", expr)

    def code(self):
        return self.view("view.state.doc.toString()")

    def open_file(self, path):
        self.page.select_option("#file", path)
        assert self.page.input_value("#file") == path

    def replace_code(self, text):
        """Select all and put `text` in, as a paste would (no auto-indent on the way)."""
        self.page.click("#editor .cm-content")
        self.page.keyboard.press("Control+A")
        self.page.keyboard.insert_text(text)
        assert self.code() == text

    def shipped(self, path):
        return self.page.evaluate("p => fetch('code/' + p).then(r => r.text())", path)

    # running

    def runs(self):
        return int(self.page.get_attribute("#console", "data-runs"))

    def run(self, click="#run", timeout=TIMEOUT_MS):
        """Start a run (a click or a key), wait for its end; returns (status, new console text)."""
        n, before = self.runs(), self.console()
        if click.startswith("key:"):
            self.page.keyboard.press(click[4:])
        else:
            self.page.click(click)
        self.wait_runs(n + 1, timeout)
        return self.page.get_attribute("#console", "data-status"), self.console()[len(before):]

    def wait_runs(self, n, timeout=TIMEOUT_MS):
        self.page.wait_for_function(
            "n => Number(document.getElementById('console').dataset.runs) >= n", arg=n,
            timeout=timeout)

    def console(self):
        return self.page.text_content("#console")

    def weight_requests(self):
        """How many times the page fetched the model's weights."""
        return self.paths().count(f"models/{MODEL}/model.safetensors")


@pytest.fixture
def open_page(pages):
    """open_page(base=None, **options): a new Page, closed after the test."""
    return lambda base=None, **options: pages(Page, base, **options)


@pytest.fixture(scope="module")
def shared_page(browser, server):
    """One Page (prompt "Hello world") for the tests that run the examples and read the side
    panels without editing anything: each new page boots Python and loads the model again."""
    p = Page(browser, server)
    try:
        yield p.open(prompt="Hello world")
    finally:
        p.close()


def test_typed_code_runs_and_prints(open_page):
    """Type a script into the editor, Ctrl+Enter: its print output shows in the console, and
    the script sees the loaded model."""
    p = open_page().open()
    assert p.page.evaluate("crossOriginIsolated") is True
    assert p.page.is_hidden("#isolation-note")
    assert p.page.input_value("#file") == "scripts/generate.py"
    p.page.click("#editor .cm-content")
    p.page.keyboard.press("Control+A")
    p.page.keyboard.press("Delete")
    p.page.keyboard.type('print("hello from the editor", 6 * 7, model.config.n_embd)')
    status, out = p.run("key:Control+Enter")
    assert status == "ok", out
    assert "hello from the editor 42 96" in out
    assert p.page.evaluate("document.documentElement.dataset.state") == "done"
    # Output is text, never HTML.
    p.replace_code('print("<b>bold</b> & <script>x</script>")\n')
    status, out = p.run()
    assert "<b>bold</b> & <script>x</script>" in out
    assert p.page.query_selector("#console b") is None
    # Generate runs scripts/generate.py as edited.
    shipped = p.shipped("scripts/generate.py")
    assert "page.output(piece)" in shipped
    p.replace_code(shipped.replace("page.output(piece)", "page.output(piece.upper() + '|')"))
    p.page.fill("#max_new_tokens", "6")
    n = p.runs()
    p.page.click("#generate")
    p.wait_runs(n + 1)
    assert p.wait_for_state("done", "error") == "done", p.page.text_content("#error")
    text = p.page.text_content("#output")
    assert text.count("|") >= 1 and text == text.upper(), text
    assert p.console_errors == [] and p.blocked == []


def test_traceback_then_the_next_run_works(open_page):
    p = open_page().open()
    p.replace_code("def ratio(a, b):\n    return a / b\n\nprint('before')\nratio(1, 0)\n")
    status, out = p.run()
    assert status == "error"
    assert "before" in out and "Traceback (most recent call last)" in out
    assert 'File "scripts/generate.py", line 5' in out and 'line 2, in ratio' in out
    assert out.rstrip().endswith("ZeroDivisionError: division by zero.")
    assert "webgpt_page" not in out and "worker.py" not in out  # the page's own frames are hidden
    # The traceback's lines link to the code: a click puts the cursor on that line.
    p.page.click("#console a.src[data-line='2']")
    assert p.view("view.state.doc.lineAt(view.state.selection.main.head).number") == 2
    assert p.page.is_hidden("#error")  # a script's error is the console's business
    assert p.page.is_enabled("#run") and p.page.is_enabled("#generate")

    p.replace_code("print('unclosed'\n")
    status, out = p.run()
    assert status == "error" and "SyntaxError" in out

    p.replace_code("print('works again')\n")
    status, out = p.run()
    assert status == "ok" and "works again" in out
    assert p.console_errors == []


def test_stop_interrupts_an_infinite_loop(open_page):
    p = open_page().open()
    p.replace_code("n = 0\nwhile True:\n    n += 1\n")
    n = p.runs()
    p.page.click("#run")
    p.page.wait_for_function("document.getElementById('console').dataset.status === 'running'")
    time.sleep(1)
    assert p.runs() == n and p.page.is_enabled("#run-stop")
    t0 = time.monotonic()
    p.page.click("#run-stop")
    p.wait_runs(n + 1, timeout=20_000)
    assert time.monotonic() - t0 < 10
    assert p.page.get_attribute("#console", "data-status") == "stopped"
    assert "KeyboardInterrupt" in p.console()
    # A loop that awaits the GPU is stopped too, and Python is fine afterwards.
    p.replace_code("ids = model.tokenizer.encode('Hello')\nwhile True:\n"
                   "    await model.logits(ids)\n")
    n = p.runs()
    p.page.click("#run")
    time.sleep(1.5)
    p.page.click("#stop")  # the generator's Stop does the same
    p.wait_runs(n + 1, timeout=20_000)
    assert p.page.get_attribute("#console", "data-status") == "stopped"
    p.replace_code("print('alive', len(await model.generate('Hello', max_new_tokens=5, "
                   "temperature=0)) > 0)\n")
    status, out = p.run()
    assert status == "ok" and "alive True" in out, out
    assert p.console_errors == []


def test_edits_survive_a_reload_and_reset_restores(open_page, browser, server):
    p = open_page().open()
    shipped = p.shipped("scripts/generate.py")
    assert p.code() == shipped
    p.page.click("#editor .cm-content")
    p.page.keyboard.press("Control+Home")
    p.page.keyboard.type("# my note\n")
    edited = "# my note\n" + shipped
    assert p.code() == edited
    p.open_file("webgpt/sampling.py")
    assert "Read-only" in p.page.text_content("#file-note")
    p.page.click("#edit-toggle")
    p.page.click("#editor .cm-content")
    p.page.keyboard.press("Control+End")
    p.page.keyboard.insert_text("# tuned\n")
    assert p.code() == p.shipped("webgpt/sampling.py") + "# tuned\n"
    p.open_file("scripts/generate.py")

    p.page.reload()
    p.ready()
    assert p.page.input_value("#file") == "scripts/generate.py"
    assert p.code() == edited
    labels = p.page.eval_on_selector_all("#file option", "os => os.map(o => o.textContent)")
    assert sum("edited" in t for t in labels) == 2, labels
    p.page.click("#reset")
    assert p.code() == shipped
    assert p.page.is_disabled("#reset")
    p.open_file("webgpt/sampling.py")
    assert p.code().endswith("\n# tuned\n")
    assert "Edited" in p.page.text_content("#file-note")
    p.page.click("#reset")

    p.page.reload()
    p.ready()
    assert p.page.input_value("#file") == "webgpt/sampling.py"  # the file in view is kept
    assert p.code() == p.shipped("webgpt/sampling.py")
    p.open_file("scripts/generate.py")
    assert p.code() == shipped
    assert p.console_errors == []

    # An edit made on an older shipped version is not mixed in: the page says so and lets the
    # user take it or drop it.
    old = json.dumps({"base": "0" * 64, "text": "print('my old edit')\n"})
    key = "webgpt-py/edit/scripts/generate.py"
    q = open_page(init_script=f"localStorage.setItem({key!r}, {old!r});")
    q.open()
    assert q.code() == shipped
    assert "older version" in q.page.text_content("#file-note")
    q.page.click("#use-old-edit")
    assert q.code() == "print('my old edit')\n"
    status, out = q.run()
    assert status == "ok" and "my old edit" in out


def _greedy(p, n=12):
    p.page.fill("#prompt", "Hello world")
    p.page.fill("#temperature", "0")
    p.page.fill("#max_new_tokens", str(n))
    n_runs = p.runs()
    p.page.click("#generate")
    p.wait_runs(n_runs + 1)
    assert p.wait_for_state("done", "error") == "done", p.page.text_content("#error")
    return p.page.text_content("#output")


def test_a_shader_edit_changes_the_result(open_page):
    """Negate the LM head's logits (gemv.wgsl with LM): greedy decoding then picks the least likely
    token."""
    p = open_page().open()
    before = _greedy(p)
    assert before
    weights = p.weight_requests()

    p.open_file("shaders/gemv.wgsl")
    assert p.page.is_visible("#edit-toggle")
    src = p.shipped("shaders/gemv.wgsl")
    line = "var y = acc;"
    assert line in src
    p.page.click("#edit-toggle")
    p.replace_code(src.replace(line, "var y = select(acc, -acc, LM);"))  # the LM head only
    after = _greedy(p)
    assert after != before
    out = p.console()
    assert "Applied: shaders/gemv.wgsl (edited)" in out and "rebuilt" in out

    # A WGSL error is reported with its line, and the run does not start.
    bad = src.replace(line, "var y = acc + nonsense;")
    p.replace_code(bad)
    status, out = p.run()
    bad_line = bad[:bad.index("nonsense")].count("\n") + 1
    assert status == "error" and f'File "shaders/gemv.wgsl", line {bad_line}' in out, out
    assert "nonsense" in out

    p.page.click("#reset")
    assert p.code() == src
    assert _greedy(p) == before
    # Neither the page nor the weights were loaded again.
    assert p.weight_requests() == weights
    # (index.html is also fetched by the service worker, which saves the page for offline use)
    assert p.page.evaluate("performance.getEntriesByType('navigation')[0].type") == "navigate"
    assert p.console_errors == []


def test_a_module_edit_takes_effect_on_the_loaded_model(open_page):
    p = open_page().open()
    weights = p.weight_requests()
    p.open_file("webgpt/model/generator.py")
    src = p.shipped("webgpt/model/generator.py")
    old = '        return "".join([piece async for piece in self.stream(\n'  # in generate()
    assert src.count(old) == 1
    p.page.click("#edit-toggle")
    p.replace_code(src.replace(old, old.replace("[piece ", "[piece.upper() + '!' ")))
    p.open_file("scripts/generate.py")
    p.replace_code("text = await model.generate('Hello world', max_new_tokens=8, temperature=0)\n"
                   "print('<<' + text + '>>', type(model).__module__, id(model.weight_store))\n")
    status, out = p.run()
    assert status == "ok", out
    assert "Applied: webgpt/model/generator.py (edited)" in out
    text = out.split("<<")[1].split(">>")[0]
    assert text.endswith("!") and text == text.upper(), text
    # The edited class took over the loaded weights (Model.adopt): the same weight store.
    weights_id = out.split("webgpt.model.generator ")[1].split()[0]

    # A module that does not import: its traceback, the model untouched, Reset recovers.
    p.open_file("webgpt/model/generator.py")
    p.replace_code(src.replace(old, old.replace("[piece ", "[(piece ")))
    p.open_file("scripts/generate.py")
    status, out = p.run()
    assert status == "error" and "SyntaxError" in out and 'File "webgpt/model/generator.py"' in out, out
    p.open_file("webgpt/model/generator.py")
    p.page.click("#reset")
    p.open_file("scripts/generate.py")
    status, out = p.run()
    assert status == "ok", out
    assert "(shipped)" in out and "!" not in out.split("<<")[1].split(">>")[0]
    assert out.split("webgpt.model.generator ")[1].split()[0] == weights_id  # the same weights
    assert p.weight_requests() == weights
    assert p.console_errors == []


def run_example(p, path):
    """Open the example `path` from the Examples menu and run it: (status, its output)."""
    p.page.click("#examples")
    p.page.click(f"#examples-list .menu-item[data-path='{path}']")
    assert p.page.input_value("#file") == path
    assert p.page.text_content("#run-target") == f"runs {path.split('/')[-1]}"
    return p.run()


def test_examples_run_and_draw(shared_page):
    p = shared_page
    items = p.page.eval_on_selector_all("#examples-list .menu-item",
                                        "bs => bs.map(b => b.dataset.path)")
    assert set(items) == {"examples/greedy_vs_sampled.py", "examples/next_token_chart.py",
                          "examples/ban_a_word.py", "examples/tokens.py", "examples/chat_loop.py",
                          "examples/logprobs.py", "examples/python_tool.py"}
    for path in items:
        if path == "examples/logprobs.py":  # test_logprobs_example_colours_the_tokens
            continue
        status, out = run_example(p, path)
        assert status == "ok", (path, out)
        if path.endswith("next_token_chart.py"):
            bars = p.page.query_selector_all("#console svg.chart g.bar")
            assert len(bars) == 12
            assert "probability" in out
        elif path.endswith("tokens.py"):
            ids = json.loads(out.split("ids: ")[1].split("\n")[0])
            assert len(p.page.query_selector_all("#console .tokens:not(.probs) .tok")) == len(ids)
        elif path.endswith("ban_a_word.py"):
            with_rule = out.split("banned:")[1]
            assert "the" not in with_rule.split("Hello world", 1)[1].lower()
        elif path.endswith("greedy_vs_sampled.py"):  # through the API: greedy, then n=2
            assert out.count("Hello world") >= 3 and "choice 1" in out, out
        elif path.endswith("chat_loop.py"):  # GPT-2: no template (tests/test_chat_page.py chats)
            assert "has no chat template" in out
        elif path.endswith("python_tool.py"):  # GPT-2: no template (tests/test_tools_page.py)
            assert "cannot call tools" in out
    assert p.console_errors == []


# The colour band of a probability, as ide.js draws page.logprobs' tokens (prob0 to prob4).
BANDS = "p => 4 - [0.9, 0.6, 0.3, 0.1].filter(b => p < b).length"


def test_logprobs_example_colours_the_tokens(shared_page):
    """The log-probs example (the API's completions with logprobs=5 on this base model): every
    generated token in the console, coloured by its probability; hovering one shows its
    alternatives with theirs, the likeliest first, the token itself marked among them."""
    p = shared_page
    status, out = run_example(p, "examples/logprobs.py")
    assert status == "ok", out
    n = int(out.split("tokens: ")[1].split(",")[0])
    toks = p.page.eval_on_selector_all(
        "#console .tokens.probs .tok",
        f"""ts => ts.map(t => [t.textContent, Number(t.dataset.p), t.className,
                               ({BANDS})(Number(t.dataset.p))])""")
    assert len(toks) == n > 0, (toks, out)
    for text, prob, cls, band in toks:
        assert 0 < prob <= 1 and cls == f"tok prob{band}", (text, prob, cls)
    card = "#console .tok-card"
    assert p.page.is_hidden(card)
    for i in (0, n - 1):
        token = p.page.locator("#console .tokens.probs .tok").nth(i)
        token.hover()
        assert p.page.is_visible(card)
        head = p.page.text_content(f"{card} .card-head")
        assert head.startswith(f"token {i + 1}: "), head
        alts = p.page.eval_on_selector_all(
            f"{card} .alt", """rs => rs.map(r => [r.querySelector('.alt-text').textContent,
                r.querySelector('.alt-p').textContent, r.classList.contains('chosen')])""")
        assert len(alts) == 5, alts
        shares = [float(a[1].rstrip("%").lstrip("<")) for a in alts]
        assert shares == sorted(shares, reverse=True), alts
        chosen = [a for a in alts if a[2]]
        shown = head.split(", ")[-1].split(" (logprob")[0]  # the token's own percentage
        if chosen:
            assert len(chosen) == 1 and chosen[0][1] == shown, (head, alts)
        else:  # sampling took a token less likely than the five
            assert toks[i][1] <= shares[-1] / 100 + 0.001, (head, alts)
    p.page.mouse.move(0, 0)
    assert p.page.is_hidden(card)
    assert p.console_errors == []


def words(text):
    return text.split()


def docstring(source, *names):
    """The docstring of the module `source` (Python), or of its names[0].names[1]..., as
    inspect.getdoc gives it."""
    node = ast.parse(source)
    for name in names:
        node = next(n for n in node.body if getattr(n, "name", None) == name)
    return ast.get_docstring(node)


def test_the_api_menu_shows_the_docstrings(shared_page):
    """The code panel's API menu lists the public API; each entry shows its signature and its
    docstring as the package has it (read in the worker), with a link to its source."""
    p = shared_page
    p.page.click("#api")
    item = "#api-list .menu-item[data-name='client.chat.completions.create']"
    p.page.wait_for_selector(item)
    names = p.page.eval_on_selector_all("#api-list .menu-item", "bs => bs.map(b => b.dataset.name)")
    assert {"webgpt.load", "model.generate", "model.stream", "model.chat", "model.chat_stream",
            "model.stream_steps", "model.logits", "webgpt.Client", "client.completions.create",
            "client.models.list", "parameters"} <= set(names), names
    p.page.click(item)
    assert p.page.is_visible("#api-doc") and p.page.is_hidden("#api-menu .menu-list")
    assert p.page.text_content("#api-doc h3") == "client.chat.completions.create"
    assert p.page.text_content("#api-doc .api-call") == "client.chat.completions.create(**params)"
    assert words(p.page.inner_text("#api-doc .api-text")) == words(docstring(
        p.shipped("webgpt/api/client.py"), "_ChatCompletions", "create"))
    p.page.click("#api-doc .api-source")
    assert p.page.input_value("#file") == "webgpt/api/client.py"
    p.page.click("#api")
    p.page.click("#api-list .menu-item[data-name='parameters']")
    text = p.page.inner_text("#api-doc .api-text")
    assert words(text) == words(docstring(p.shipped("webgpt/api/params.py")))
    assert "frequency_penalty" in text
    # Prose flows to the panel's width; the indented list keeps its lines.
    assert p.page.eval_on_selector_all("#api-doc .api-text pre",
                                       "ps => ps.map(p => p.textContent)")[0].startswith("model, ")
    p.page.click("#howto-toggle")  # one side panel at a time
    assert p.page.is_hidden("#api-doc") and p.page.is_visible("#howto")
    p.page.click("#howto-toggle")
    assert p.console_errors == []


def test_how_it_works_links_the_code_and_gives_shapes(shared_page):
    p = shared_page
    p.page.click("#howto-toggle")
    p.page.wait_for_function("document.getElementById('howto').textContent.includes('T = ')")
    text = p.page.text_content("#howto")
    assert "C = n_embd = 96" in text and "V = vocab_size = 1000" in text
    assert "(T, 3C) = (" in text and ", 288)" in text
    # The embedding step opens the forward pass at the line that records it, then its shader
    # (named by the plan's launch record for it).
    step = "#howto li:has-text('Embedding')"
    p.page.click(f"{step} button.py")
    assert p.page.input_value("#file") == "webgpt/arch/gpt2.py"
    flashed = p.page.text_content("#editor .cm-flash")
    assert "x = wte[ids] + wpe" in flashed, flashed
    p.page.click(f"{step} button.wgsl")
    assert p.page.input_value("#file") == "shaders/embedding.wgsl"
    for name in ("attention.wgsl", "layernorm.wgsl", "gemv.wgsl", "matvec.wgsl"):
        assert p.page.query_selector(f"#howto button.wgsl:text-is('{name}')"), name


# [line number, its gutter box's top and height, its text line's top and height], for the first
# n lines of the file in the editor, two frames on (CodeMirror measures in the next one).
LINE_BOXES = """async n => {
    for (let i = 0; i < 2; i++) await new Promise(r => requestAnimationFrame(r));
    const editor = document.getElementById('editor');
    const numbers = new Map([...editor.querySelectorAll('.cm-lineNumbers .cm-gutterElement')]
        .map(e => [e.textContent, e.getBoundingClientRect()]));
    return [...editor.querySelectorAll('.cm-line')].slice(0, n).map((line, i) => {
        const text = line.getBoundingClientRect(), number = numbers.get(String(i + 1));
        return [i + 1, number ? number.top : null, number ? number.height : null,
                text.top, text.height];
    });
}"""


def _misaligned(p, n=20):
    """The lines whose number does not sit beside them (to within a pixel), of the first n."""
    boxes = p.page.evaluate(LINE_BOXES, n)
    assert len(boxes) == n, boxes
    return [b for b in boxes if b[1] is None or abs(b[1] - b[3]) > 1 or abs(b[2] - b[4]) > 1]


def test_line_numbers_sit_beside_their_lines(open_page):
    """The gutter's numbers line up with the text's lines, also for a file shown while the
    editor is below the fold (as the page opens in a short window, or a full-page screenshot
    shows it): CodeMirror measures lines only in the window, and its estimate of their height
    (14 px) is not this page's (13 px text, line-height 1.45)."""
    p = open_page(viewport={"width": 1000, "height": 600}).open()
    below = "document.getElementById('editor').getBoundingClientRect().top > innerHeight"
    assert p.page.evaluate(below), "the editor is in the window: this test needs it below"
    p.page.wait_for_function("document.querySelectorAll('#editor .cm-line').length >= 20")
    assert _misaligned(p) == []
    # Another file, shown while the editor is still out of sight (#file's change event, as a
    # pick in the list makes, without scrolling to it).
    p.page.evaluate("""() => { const f = document.getElementById('file');
        f.value = 'webgpt/sampling.py'; f.dispatchEvent(new Event('change')); }""")
    assert p.page.evaluate(below) and p.code() == p.shipped("webgpt/sampling.py")
    assert _misaligned(p) == []
    p.page.evaluate("document.getElementById('editor').scrollIntoView()")
    p.page.wait_for_timeout(200)
    assert _misaligned(p) == []
    assert p.console_errors == []


def test_download_saves_the_edits(open_page):
    p = open_page().open()
    p.replace_code("print('mine')\n")
    with p.page.expect_download() as d:
        p.page.click("#download")
    assert d.value.suggested_filename == "generate.py"
    with open(d.value.path(), encoding="utf-8") as f:
        assert f.read() == "print('mine')\n"
    p.open_file("shaders/argmax.wgsl")
    p.page.click("#edit-toggle")
    p.replace_code("// mine\n")
    with p.page.expect_download() as d:
        p.page.click("#download-edits")
    assert d.value.suggested_filename == "webgpt-edits.zip"
    with zipfile.ZipFile(d.value.path()) as z:
        assert z.testzip() is None
        assert sorted(z.namelist()) == ["scripts/generate.py", "shaders/argmax.wgsl"]
        assert z.read("shaders/argmax.wgsl") == b"// mine\n"


def test_without_isolation_stop_still_ends_generation(open_page, plain_server):
    p = open_page(plain_server).open()
    assert p.page.evaluate("crossOriginIsolated") is False
    assert "cannot interrupt" in p.page.text_content("#isolation-note")
    p.page.fill("#max_new_tokens", "4000")
    p.page.fill("#temperature", "1")
    n = p.runs()
    p.page.click("#generate")
    p.page.wait_for_function("document.getElementById('output').childNodes.length >= 5",
                             timeout=TIMEOUT_MS)
    p.page.click("#stop")
    p.wait_runs(n + 1, timeout=20_000)
    assert p.wait_for_state("done", "error") == "done"
    stats = p.page.text_content("#stats")
    assert "stopped: yes" in stats
    # A loop that never awaits cannot be interrupted here: the page offers a restart.
    p.replace_code("while True:\n    pass\n")
    p.page.click("#run")
    time.sleep(0.5)
    p.page.click("#run-stop")
    p.page.wait_for_selector("#console .sys.warn button", timeout=20_000)
    assert "not cross-origin isolated" in p.console()
    p.page.click("#console .sys.warn button")
    p.ready()
    p.replace_code("print('fresh')\n")
    status, out = p.run()
    assert status == "ok" and "fresh" in out


def test_site_has_the_editor_bundle_and_the_code(site, server):
    with urllib.request.urlopen(server + "index.html") as r:
        assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    with open(os.path.join(site, "code", "index.json"), encoding="utf-8") as f:
        index = {e["path"]: e for e in json.load(f)["files"]}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in ("scripts/generate.py", "examples/tokens.py", "webgpt/arch/gpt2.py",
                 "webgpt/gpu/browser.py", "shaders/matvec.wgsl"):
        with open(os.path.join(site, "code", path), "rb") as f:
            data = f.read()
        assert index[path]["sha256"] == hashlib.sha256(data).hexdigest()
        assert index[path]["bytes"] == len(data)
    with open(os.path.join(root, "web", "scripts", "generate.py"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == index["scripts/generate.py"]["sha256"]
    assert {e["kind"] for e in index.values()} == {"script", "example", "module", "shader"}
    with open(os.path.join(site, "editor.js"), encoding="utf-8") as f:
        bundle = f.read()
    assert 'from"@' not in bundle and 'from "@' not in bundle  # one file: nothing left to import
    with open(os.path.join(site, "editor-licenses.txt"), encoding="utf-8") as f:
        licenses = f.read()
    assert "@codemirror/view" in licenses and "MIT" in licenses
    with open(os.path.join(root, "web", "package.json"), encoding="utf-8") as f:
        pkg = json.load(f)
    for name, version in {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}.items():
        assert version[0].isdigit(), f"{name} is not pinned: {version}"
    with open(os.path.join(root, "web", "package-lock.json"), encoding="utf-8") as f:
        assert '"resolved"' not in f.read()
