"""A Python tool: the model answers by writing Python that runs here, in the page's Pyodide,
once you allow it.

`webgpt.function_tool` makes a tool of a Python function: its type hints and docstring give
the schema the model is shown, `.run(call)` calls it with a call's arguments. The tool here,
`python`, takes code from the model. The page shows that code with Run and Don't run buttons
(page.confirm) and runs it only once you press Run; what it printed, and the exception it
raised if it failed, go back to the model as the tool's result, and the model answers with
them. Declined, the model is told so. The call is constrained to the tool's schema while it is
generated (tool_choice "required": the model must call it), so it always parses.

What such code can reach: what any Python in this page can. That is this worker's Python (its
modules, the loaded `model` and the GPU through it), what the page's origin keeps that a
worker can open (IndexedDB and the Cache API, the model store among them), and the network
requests the browser allows this page (its own server, and servers that allow it by CORS).
Not the page's DOM, not other sites' data. The code runs in a namespace of its own, not in
this script's globals; read it before you press Run.
"""

import contextlib
import io
import traceback

QUESTION = "What is the sum of the squares of the whole numbers from 1 to 10? Use Python."


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
            exec(compile(code, "<the model's code>", "exec"), {"__name__": "__tool__"})
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
