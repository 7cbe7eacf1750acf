#!/usr/bin/env bash
# Build llama.cpp's CUDA backend (libggml-cuda.so) for one GPU architecture from the source
# node-llama-cpp 3.21.1 pins (its llama/gitRelease.bundle), on a machine with no GPU and no CUDA
# install: the CUDA 13.0 compiler, headers and libraries come from NVIDIA's PyPI wheels. The
# result replaces the prebuilt one in the CUDA package (tests/scripts/pack_llamacpp.sh cuda
# --cuda-lib FILE), whose 159 MB of PTX for every GPU do not fit the lent GPU's carry limit and
# which that GPU's CUDA 13.0 driver refuses ("PTX compiled with an unsupported toolchain").
#
# Usage: tests/scripts/build_llamacpp_cuda.sh [ARCH] [WORK]
#   ARCH: CMAKE_CUDA_ARCHITECTURES, 90-real by default (H100, H200: machine code, no PTX)
#   WORK: a scratch folder, /tmp/llamacpp-cuda by default; prints the library's path at the end.
# Needs: python3 with pip and venv, gcc/g++ (12 here), ninja, node-llama-cpp in
# tests/llamacpp/node_modules (npm ci there). 20 to 30 minutes on 2 cores; 154 compile steps.
# The library links libcudart.so.13, libcublas.so.13 (the device's, from its PyTorch) and
# libcuda.so.1 (the driver; a stub with the eleven driver calls it makes stands in at link time).
set -euo pipefail

arch=${1:-90-real}
work=${2:-/tmp/llamacpp-cuda}
root=$(cd "$(dirname "$0")/../.." && pwd)
bundle="$root/tests/llamacpp/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[ -f "$bundle" ] || { echo "no $bundle: run npm ci in tests/llamacpp first" >&2; exit 1; }
mkdir -p "$work"
cd "$work"

# CUDA 13.0 (the lent GPU's driver runs 13.0 and older), as wheels; pip keeps no file modes
# when unpacking with zipfile, so the tools are made executable again.
cuda="$work/cuda/nvidia/cu13"
if [ ! -x "$cuda/bin/nvcc" ]; then
  python3 -m pip download -q --no-deps -d wheels nvidia-cuda-nvcc==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.0.2.14 nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  for w in wheels/*.whl; do python3 -m zipfile -e "$w" cuda/; done
  chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/*
  for l in cudart cublas cublasLt; do ln -sf "lib$l.so.13" "$cuda/lib/lib$l.so"; done
  ln -sfn lib "$cuda/lib64"
  mkdir -p "$cuda/lib/stubs"
  {
    echo "/* link-time stand-in for the driver library; the real libcuda.so.1 loads at run time */"
    for f in cuDeviceGet cuDeviceGetAttribute cuGetErrorString cuMemAddressFree \
        cuMemAddressReserve cuMemCreate cuMemGetAllocationGranularity cuMemMap cuMemRelease \
        cuMemSetAccess cuMemUnmap; do
      echo "int $f(void) { return 0; }"
    done
  } > stub.c
  gcc -shared -fPIC -o "$cuda/lib/stubs/libcuda.so" -Wl,-soname,libcuda.so.1 stub.c
fi

# CMake 3.25 (Debian 12's) cannot identify this nvcc; 3.31 can.
[ -x cmake-venv/bin/cmake ] || { python3 -m venv cmake-venv && cmake-venv/bin/pip install -q cmake==3.31.6; }

[ -d src ] || git clone -q "$bundle" src
export PATH="$work/cmake-venv/bin:$cuda/bin:$PATH"
cmake -S src -B src/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
  -DGGML_BACKEND_DL=ON -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF \
  -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc" -DCUDAToolkit_ROOT="$cuda" \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_PLATFORM_NO_VERSIONED_SONAME=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  > cmake.log
ninja -C src/build ggml-cuda
echo "$work/src/build/bin/libggml-cuda.so"
