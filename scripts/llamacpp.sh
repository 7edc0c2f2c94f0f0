#!/usr/bin/env bash
# Build llama.cpp's tools (llama-server, llama-quantize, llama-tokenize) once per version and flags.
#
# The source is the llama-cpp-python sdist's vendored tree (PyPI is reachable where GitHub is not),
# pinned below. The build lands in a cache keyed by that version and the cmake flags, so a second
# run (CI on the same machine, a second clone) is a no-op; a fresh machine pays it once (~15 min on
# 2 cores for these three targets; all of llama.cpp is ~35). Prints the bin folder on its last line.
set -euo pipefail
VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
PY="${PYTHON:-python3}"
FLAGS="-DCMAKE_BUILD_TYPE=Release -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF"
KEY="$VERSION-$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)"
ROOT="${DISCMED_CACHE:-$HOME/.cache/discmed}/llama.cpp"
DEST="$ROOT/$KEY"
TOOLS="llama-server llama-quantize llama-tokenize"
if [ -f "$DEST/.done" ]; then echo "$DEST"; exit 0; fi
mkdir -p "$ROOT"
WORK="$(mktemp -d "$ROOT/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$WORK/build" $FLAGS >&2
# shellcheck disable=SC2086
cmake --build "$WORK/build" -j "$(nproc)" --target $TOOLS >&2
mkdir -p "$DEST/bin"
for t in $TOOLS; do cp "$WORK/build/bin/$t" "$DEST/bin/"; done
# The converter and its gguf package travel with the binaries, the same version as them.
cp -r "$SRC/convert_hf_to_gguf.py" "$SRC/gguf-py" "$DEST/"
[ -d "$SRC/conversion" ] && cp -r "$SRC/conversion" "$DEST/"
echo "$VERSION" > "$DEST/VERSION"
touch "$DEST/.done"
echo "$DEST"
