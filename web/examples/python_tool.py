"""A Python tool: the model answers by writing Python that runs here, in the page's Pyodide,
once you allow it.

`webgpt.function_tool` makes a tool of a Python function: its type hints and docstring give
the schema the model is shown, `.run(call)` calls it with a call's arguments. The tool here,
`python`, takes code from the model. The page shows that code with Run and Don't run buttons
(page.confirm) and runs it only once you press Run; what it printed, and the exception it
raised if it failed, go back to the model as the tool's result, and the model answers with
them. Declined, the model is told so. The call is constrained to the tool's schema while it is
generated (tool_choice "required": the model must call it), so it always parses.

What such code can reach: it runs in this worker's Python, beside the page's own code, so in
principle what any Python in the page can: the loaded model and the GPU, what the page's origin
keeps that a worker can open (IndexedDB and the Cache API, the model store among them), and
the network requests the browser allows this page (its own server, and servers that allow it
by CORS); never the page's DOM or other sites' data. It gets a namespace of its own (not this
script's globals: no `model`, no `page`), and imports that lead to the rest (js, pyodide,
webgpt, sys, importlib, gc, ...) are refused; that keeps honest code away from the weights
and the store, but Pyodide has no sandbox, and code written to get around it can. So read it
before you press Run: the confirmation is the protection.
"""

import builtins
import contextlib
import io
import traceback

QUESTION = "What is the sum of the squares of the whole numbers from 1 to 10? Use Python."


# Modules that lead from the tool's code to the page's own: the JavaScript world (the store,
# fetch), the loaded model, the interpreter's module table.
REFUSED = {"js", "pyodide", "pyodide_js", "_pyodide", "micropip", "webgpt", "sys", "importlib",
           "gc", "builtins", "inspect", "ctypes", "_ctypes"}


def guarded_import(name, *args, **kwargs):
    if name.split(".")[0] in REFUSED:
        raise ImportError(f"the python tool does not let code import {name}")
    return builtins.__import__(name, *args, **kwargs)


@webgpt.function_tool
async def python(code: str) -> str:
    """Run a Python program and return what it printed, or its error.

    code: the program; print() the answer
    """
    if not await page.confirm("The model wants to run this Python code:", code):
        return "The person did not allow this code to run."
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            namespace = {"__name__": "__tool__",
                         "__builtins__": dict(vars(builtins), __import__=guarded_import)}
            exec(compile(code, "<the model's code>", "exec"), namespace)
        except Exception:
            print(traceback.format_exc(limit=-1), end="")
    return printed.getvalue() or "(the program printed nothing)"


# ---- the conversation: a call, its result, the answer
if model.tokenizer.chat_template is None:
    print("This model has no chat template, so it cannot call tools: pick an instruct model.")
else:
    client = webgpt.Client(model)
    messages = [{"role": "user", "content": QUESTION}]
    sampling = dict(max_tokens=params.max_new_tokens, temperature=params.temperature,
                    top_k=params.top_k, top_p=params.top_p, seed=params.seed)
    reply = await client.chat.completions.create(messages=messages, tools=[python.schema],
                                                 tool_choice="required", **sampling)
    message = reply.choices[0].message
    if not message.tool_calls:
        print("The call did not end within max_new_tokens: raise it and run again.")
    else:
        messages.append(message.model_dump())
        for call in message.tool_calls:
            result = await python.run(call)
            print(f"python printed: {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        answer = await client.chat.completions.create(messages=messages, tools=[python.schema],
                                                      **sampling)
        print(answer.choices[0].message.content)
