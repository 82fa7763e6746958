#!/usr/bin/env bash
# Builds the remotedialer column of bench/proxy (main.go here, pinned by
# go.mod/go.sum) into ~/.cache/hawser/bench/, keyed by a hash of its sources,
# and prints the binary's path on stdout (progress on stderr). A second run
# with unchanged sources only hashes them. Go's module and build caches live
# under ~/.cache/hawser/bench too, so a rebuild after an edit is quick.
# Run by bench/proxy (npm run bench:proxy); never by npm test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${HAWSER_BENCH_CACHE:-$HOME/.cache/hawser/bench}"
say() { printf '[remotedialer build] %s\n' "$*" >&2; }

command -v go >/dev/null || { say "go is not installed: the remotedialer column needs Go >= 1.22"; exit 3; }
hash="$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)"
bin="$cache/remotedialer-bench-$hash"
if [[ -x "$bin" ]]; then
  say "cached: $bin"
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
export GOPATH="$cache/go" GOCACHE="$cache/go-build" GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
say "$(go version); sources $hash; caches under $cache"
say "downloading modules (go.sum pinned)"
(cd "$here" && go mod download -x 2>&1 | grep -E '^# get .*200 OK' | sed 's/^/  /' >&2 || true)
(cd "$here" && go mod verify >&2)
say "compiling (a line every 25 packages; about 250 on a cold cache)"
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$here" && go build -v -trimpath -o "$tmp" . 2>&1) | awk '/^(#|[^ ]+\.go:)/ { print; next } { n++; if (n % 25 == 0) printf "  %d packages (%s)\n", n, $0 }' >&2
[[ -x "$tmp" ]] || { say "build failed"; exit 1; }
mv "$tmp" "$bin"
say "built $bin"
echo "$bin"
