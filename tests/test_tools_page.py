"""The page's Python tool (web/examples/python_tool.py) in Chromium: the code a tool call
brings is shown with Run and Don't run (page.confirm), runs in the page's Pyodide only after
Run, and its output and its exception are the tool's result; declined, nothing runs.

The example's own tool is run with a fixed call (its conversation needs an instruct model
with room for the tools in its context, which the page's test models are not; tests/
test_tools.py runs tool calls through the API on such a model).
"""

import json

from test_editor import Page

CODE = ("import math\nprint('ran:', 6 * 7, math.floor(2.5))\ntry:\n    import js\n"
        "except ImportError as e:\n    print(e)\n1 / 0\n")


def drive(p, source):
    """The example's tool, then a call of it with CODE, in the editor; returns once the
    confirmation is shown."""
    tool = source.split("# ---- the conversation")[0]
    call = {"id": "call_1", "type": "function",
            "function": {"name": "python", "arguments": json.dumps({"code": CODE})}}
    p.replace_code(tool + f"\nprint('result:', await python.run({call!r}))\n")
    n = p.runs()
    p.page.click("#run")
    p.page.wait_for_selector("#console .confirm button.confirm-run:not([disabled])")
    return n


def test_the_python_tool_runs_only_once_allowed(pages):
    p = pages(Page, None).open()
    source = p.shipped("examples/python_tool.py")
    p.open_file("examples/python_tool.py")

    n = drive(p, source)
    box = p.page.query_selector("#console .confirm:last-of-type")
    assert box.query_selector(".confirm-text").text_content() == CODE
    assert "ran: 42" not in p.console()         # shown, not run
    p.page.click("#console .confirm:last-of-type button.confirm-run")
    p.wait_runs(n + 1)
    out = p.console()
    assert p.page.get_attribute("#console", "data-status") == "ok", out
    result = out.split("result:")[-1]
    assert "ran: 42 2" in result and "ZeroDivisionError: division by zero" in result
    assert "does not let code import js" in result
    assert box.get_attribute("data-answer") == "run"

    n = drive(p, source)
    before = p.console()
    p.page.click("#console .confirm:last-of-type button.confirm-no")
    p.wait_runs(n + 1)
    new = p.console()[len(before):]
    assert "did not allow" in new and "ran: 42" not in new
    assert p.page.eval_on_selector_all("#console .confirm button",
                                       "bs => bs.every(b => b.disabled)")
    assert p.console_errors == []
