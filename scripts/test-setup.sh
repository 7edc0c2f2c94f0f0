#!/usr/bin/env bash
# Installs what the test suite needs outside Python: Debian's chromium and chromium-driver for
# the browser tests (never a browser download), a CJK font so pages and charts render Chinese, and
# Go (Debian's golang-go): tests/test_gguf.py renders Ollama's Modelfile template with Go's own
# text/template, the engine Ollama renders it with.
# Skips quietly when they are already there.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-setup: installing ${need[*]} from Debian"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || echo "test-setup: could not install ${need[*]}; browser tests will fail"
else
  echo "test-setup: missing ${need[*]} and not root; install them with apt"
fi
