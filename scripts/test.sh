#!/usr/bin/env bash
# The whole test suite, as `npm test` and CI run it: prepare the real testbed
# (cached under ~/.cache/hawser), build, check the wire contract and code
# style, then run every test against real components.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "testbed: kube-apiserver, etcd, toxiproxy (cached after the first build)"
bash scripts/build-testbed.sh

step "build"
npx tsc -p tsconfig.build.json

step "wire contract: buf lint and buf breaking against main"
npx buf lint
if git rev-parse --verify -q main >/dev/null 2>&1 && git ls-tree -r --name-only main | grep -q '^proto/'; then
  npx buf breaking --against '.git#branch=main'
fi

step "type check and lint"
npx tsc --noEmit -p tsconfig.json
npx eslint .

step "tests (unit, then integration against real components)"
npx vitest run
