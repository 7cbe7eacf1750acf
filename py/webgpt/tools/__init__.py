"""Tools that run in CPython only, beside the runtime: none of them ships in the page's wheel.

    cli.py        python -m webgpt generate | chat | info | bench | quantize | fetch | import
    bench.py      decode/prefill speed on random weights, with PyTorch peers where CUDA is there
    quantize.py   8- and 4-bit block-quantized copies of model folders (and their format)
    hub.py        downloads model folders from the Hugging Face hub (resumable, checked)
    importers.py  nanoGPT checkpoints and original WebGPT weight folders as model folders

    site/         build.py's jobs, one module each: the site (dist.py), its wheels, snapshot,
                  bundles, editor files, models and service-worker manifest, the dev server

build.py is a thin entry over site/, and delegates its model commands (fetch, import,
quantize) to cli.py.
"""
