#!/usr/bin/env bash
# The browser test (test/graphiql.browser.test.ts) drives Debian's Chromium
# with playwright-core; this installs it when it is missing (CI runs as root,
# without a terminal). playwright's own browser download is not used.
set -euo pipefail
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
  exit 0
fi
if [ -n "${CHROMIUM_PATH:-}" ]; then
  echo "ensure-chromium: CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-chromium: no $chromium and no apt-get: install Chromium and set CHROMIUM_PATH" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "ensure-chromium: installing chromium needs root (or sudo)" >&2; exit 1; }
  sudo=(sudo -n)
fi
echo "ensure-chromium: installing Debian's chromium for the browser test" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq </dev/null >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium </dev/null >&2
"$chromium" --version >&2
