#!/usr/bin/env bash
# Installs what the test suite needs outside Python: Debian's chromium and chromium-driver for
# the browser tests (never a browser download). Skips quietly when they are already there.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-setup: installing chromium and chromium-driver from Debian"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
    || echo "test-setup: could not install chromium; browser tests will fail"
else
  echo "test-setup: chromium missing and not root; install chromium and chromium-driver"
fi
