"""The `gpu_device` fixture: one native WebGPU device for a test module.

A module that needs a GPU imports it (`from gpu_fixture import gpu_device`). Where wgpu or an
adapter is missing the module skips, saying why, except under CI (CI=true), where the adapter
(lavapipe) is installed and a missing one is a failure.
"""

import asyncio
import os

import pytest


def open_device():
    from webgpt import gpu

    try:
        return asyncio.run(gpu.request_device())
    except (gpu.GPUError, ImportError) as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no WebGPU adapter for wgpu here: {e}")


@pytest.fixture(scope="module")
def gpu_device():
    return open_device()
