"""Tools that run in CPython only, beside the runtime: none of them ships in the page's wheel.

    cli.py        python -m webgpt generate | chat | info | bench | quantize | fetch | import
    bench.py      decode/prefill speed on random weights, with transformers as a baseline
    quantize.py   8- and 4-bit block-quantized copies of model folders (and their format)
    hub.py        downloads model folders from the Hugging Face hub (resumable, checked)
    importers.py  nanoGPT checkpoints and original WebGPT weight folders as model folders

build.py delegates its model commands (fetch, import, quantize) to cli.py.
"""
