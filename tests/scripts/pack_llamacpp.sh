#!/usr/bin/env bash
# Pack llama.cpp (node-llama-cpp 3.21.1 and one prebuilt build) and this machine's node for a
# machine with no node and no network (the lent GPU), into the git-ignored folder .peer/:
#   .peer/node.xz                      node, stripped, xz-compressed
#   .peer/llamacpp-BACKEND.tar.xz      node_modules/: node-llama-cpp, the JS packages it needs,
#                                      @node-llama-cpp/linux-x64-BACKEND
# Usage: tests/scripts/pack_llamacpp.sh [vulkan|cuda|cpu] [--with-source] [--cuda-lib FILE]
#   vulkan (default), cuda (CUDA 13: links the device's libcudart/libcublas .so.13; its
#   code for every GPU kept as shipped), cpu.
#   --with-source keeps llama.cpp's source bundle (llama/gitRelease.bundle, for a local build).
#   --cuda-lib FILE (with cuda): the package's libggml-cuda.so replaced by FILE, a build of the
#   same llama.cpp source for one GPU (tests/scripts/build_llamacpp_cuda.sh: sm_90 machine
#   code, 46 MB, where the shipped one is 159 MB of PTX that a device over the carry limit).
# The JS packages are those of tests/llamacpp/package-lock.json (npm ci checks their
# integrity); the backend's package is fetched with npm pack and checked against the lock's
# integrity too. Dropped: the other builds, docs, type declarations, source maps, the build
# tooling's sources (llama/addon, cmake). Prints the sizes and the line that unpacks it on the
# device under /tmp/peer.
set -euo pipefail

backend=vulkan
source_bundle=
cuda_lib=
while [ $# -gt 0 ]; do
  case "$1" in
    vulkan|cuda|cpu) backend=$1 ;;
    --with-source) source_bundle=$1 ;;
    --cuda-lib) cuda_lib=$(realpath "$2"); shift ;;
    *) echo "usage: $0 [vulkan|cuda|cpu] [--with-source] [--cuda-lib FILE]" >&2; exit 2 ;;
  esac
  shift
done
[ -z "$cuda_lib" ] || [ "$backend" = cuda ] || { echo "--cuda-lib goes with cuda" >&2; exit 2; }
case "$backend" in
  vulkan|cuda) pkg="@node-llama-cpp/linux-x64-$backend" ;;
  cpu) pkg="@node-llama-cpp/linux-x64" ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/.peer"
mkdir -p "$out"
grep -qx '/.peer/' "$root/.git/info/exclude" 2>/dev/null || echo '/.peer/' >> "$root/.git/info/exclude"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

cp "$root/tests/llamacpp/package.json" "$root/tests/llamacpp/package-lock.json" "$stage/"
(cd "$stage" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error)
mods="$stage/node_modules"
if [ "$backend" != cpu ]; then
  (cd "$stage" && npm pack "$pkg@3.21.1" --pack-destination "$stage" --loglevel=error >/dev/null)
  tgz=$(ls "$stage"/node-llama-cpp-linux-x64-"$backend"-3.21.1.tgz)
  want=$(node -e 'const l=require(process.argv[1]);console.log(l.packages["node_modules/"+process.argv[2]].integrity)' \
    "$stage/package-lock.json" "$pkg")
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  [ "$want" = "$got" ] || { echo "$pkg: integrity $got is not the lock's $want" >&2; exit 1; }
  mkdir -p "$mods/$pkg"
  tar xzf "$tgz" -C "$mods/$pkg" --strip-components=1
  rm -rf "$mods/@node-llama-cpp/linux-x64" "$tgz"   # the CPU build: not needed beside it
  if [ -n "$cuda_lib" ]; then
    cp "$cuda_lib" "$mods/$pkg/bins/linux-x64-cuda/libggml-cuda.so"
    strip --strip-unneeded "$mods/$pkg/bins/linux-x64-cuda/libggml-cuda.so"
  fi
fi
llama="$mods/node-llama-cpp/llama"
[ "$source_bundle" = --with-source ] || rm -f "$llama/gitRelease.bundle"
rm -rf "$llama/addon" "$llama/cmake" "$llama/patches" "$llama/profiles" "$llama/CMakeLists.txt" \
  "$mods/.bin" "$mods/node-api-headers" "$mods/node-addon-api"
find "$mods" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' -o -name '*.markdown' \
  -o -name 'CHANGELOG*' -o -name '*.ts.map' \) -type f -delete
find "$mods" -type d \( -name docs -o -name doc -o -name test -o -name tests -o -name example \
  -o -name examples \) -prune -exec rm -rf {} +

tar cJf "$out/llamacpp-$backend.tar.xz" -C "$stage" node_modules package.json
strip -o "$stage/node" "$(command -v node)"
xz -9e -T0 -c "$stage/node" > "$out/node.xz"

du -b "$out/node.xz" "$out/llamacpp-$backend.tar.xz" | \
  awk '{printf "%-40s %6.1f MiB\n", $2, $1 / 1048576; t += $1} END {printf "%-40s %6.1f MiB\n", "total", t / 1048576}'
echo "unpack on the device (from the repository root, .peer/ carried):"
echo "python3 -c \"import lzma,os,shutil,tarfile; os.makedirs('/tmp/peer',exist_ok=True); shutil.copyfileobj(lzma.open('.peer/node.xz'),open('/tmp/peer/node','wb')); os.chmod('/tmp/peer/node',0o755); tarfile.open('.peer/llamacpp-$backend.tar.xz').extractall('/tmp/peer')\""
