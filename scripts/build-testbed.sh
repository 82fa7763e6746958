#!/usr/bin/env bash
# Builds the real components the tests talk to: kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl from one k8s.io/kubernetes
# module, etcd from its Go module, toxiproxy and kwok with `go install`.
# Everything lands under $HAWSER_TESTBED_DIR (default ~/.cache/hawser/testbed)
# keyed by version, so a second run finds the binaries and returns at once.
set -euo pipefail

KUBE_VERSION="${HAWSER_KUBE_VERSION:-v1.33.13}"
ETCD_VERSION="${HAWSER_ETCD_VERSION:-v3.6.16}"
TOXIPROXY_VERSION="${HAWSER_TOXIPROXY_VERSION:-v2.12.0}"
# kwok v0.7.0: the newest release built against the k8s 1.33 client libraries
# (client-go v0.33, 1.33.0 in its supported_releases.txt) and needing only Go
# 1.24; v0.8.0 needs Go 1.26 and targets client-go v0.36.
KWOK_VERSION="${HAWSER_KWOK_VERSION:-v0.7.0}"
# Everything built from the k8s.io/kubernetes module, at $KUBE_VERSION.
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
ROOT="${HAWSER_TESTBED_DIR:-$HOME/.cache/hawser/testbed}"
BIN="$ROOT/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
  echo "[testbed] Go is required to build the Kubernetes components, etcd, toxiproxy and kwok (go 1.24 or newer on PATH)" >&2
  exit 1
fi

step() { printf '[testbed] %s\n' "$*" >&2; }
have() { [ -x "$BIN/$1" ] && [ -f "$BIN/$1.version" ] && [ "$(cat "$BIN/$1.version")" = "$2" ]; }
# Go prints nothing while it compiles for minutes; a heartbeat line shows it is alive.
with_progress() {
  local label=$1; shift
  local start=$SECONDS
  ( while sleep 30; do printf '[testbed] %s: still building (%ss)\n' "$label" $((SECONDS - start)) >&2; done ) &
  local ticker=$!
  local rc=0
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  [ $rc -eq 0 ] && step "$label: built in $((SECONDS - start))s"
  return $rc
}

# One module whose tools.go imports every command we build, so `go mod tidy`
# resolves them all; rewritten (and tidied again) when that list changes.
prepare_kube_module() {
  local dir="$ROOT/src/kubernetes-$KUBE_VERSION"
  mkdir -p "$dir"
  cd "$dir"
  local tools
  tools=$(printf '//go:build tools\n\npackage tools\n\nimport (\n'; \
    for c in "${KUBE_COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done; printf ')\n')
  if [ ! -f go.mod ]; then
    step "kubernetes $KUBE_VERSION: resolving k8s.io/kubernetes and its staging modules"
    cat > go.mod <<MOD
module hawser.local/testbed/kubernetes

go 1.24
MOD
    # k8s.io/kubernetes points its staging modules at ./staging; replace each
    # with the published v0.x of the same release.
    local staging_ver="v0.${KUBE_VERSION#v1.}"
    local modfile
    modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    local replaces
    replaces=$(grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk '{print $1}')
    {
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      for m in $replaces; do echo "replace $m => $m $staging_ver"; done
    } >> go.mod
  fi
  if [ ! -f tools.go ] || [ "$(cat tools.go)" != "$tools" ]; then
    step "kubernetes $KUBE_VERSION: resolving ${KUBE_COMMANDS[*]}"
    printf '%s\n' "$tools" > tools.go
    go mod tidy -e >/dev/null 2>&1 || go mod tidy
  fi
}

build_kube_command() {
  local cmd=$1
  prepare_kube_module
  local major=1 minor
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  step "$cmd $KUBE_VERSION: compiling (cold: minutes on 2 cores; packages shared with the others come from the Go build cache)"
  with_progress "$cmd" go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  echo "$KUBE_VERSION" > "$BIN/$cmd.version"
}

build_etcd() {
  local dir="$ROOT/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cd "$dir"
  if [ ! -f go.mod ]; then
    step "etcd $ETCD_VERSION: resolving go.etcd.io/etcd/server/v3"
    cat > go.mod <<MOD
module hawser.local/testbed/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    go mod tidy -e >/dev/null 2>&1 || go mod tidy
  fi
  step "etcd $ETCD_VERSION: compiling"
  with_progress etcd go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  echo "$ETCD_VERSION" > "$BIN/etcd.version"
}

build_toxiproxy() {
  step "toxiproxy $TOXIPROXY_VERSION: go install"
  with_progress toxiproxy env GOBIN="$BIN" go install -trimpath -ldflags "-s -w" \
    "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" \
    "github.com/Shopify/toxiproxy/v2/cmd/cli@$TOXIPROXY_VERSION"
  mv "$BIN/server" "$BIN/toxiproxy-server"
  mv "$BIN/cli" "$BIN/toxiproxy-cli"
  echo "$TOXIPROXY_VERSION" > "$BIN/toxiproxy-server.version"
}

have toxiproxy-server "$TOXIPROXY_VERSION" || build_toxiproxy
build_kwok() {
  step "kwok $KWOK_VERSION: go install"
  with_progress kwok env GOBIN="$BIN/kwok-$KWOK_VERSION" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$BIN/kwok-$KWOK_VERSION/kwok" "$BIN/kwok"
  rmdir "$BIN/kwok-$KWOK_VERSION"
  echo "$KWOK_VERSION" > "$BIN/kwok.version"
}

have toxiproxy-server "$TOXIPROXY_VERSION" || build_toxiproxy
have etcd "$ETCD_VERSION" || build_etcd
for cmd in "${KUBE_COMMANDS[@]}"; do
  have "$cmd" "$KUBE_VERSION" || build_kube_command "$cmd"
done
have kwok "$KWOK_VERSION" || build_kwok
step "ready in $BIN (${KUBE_COMMANDS[*]} $KUBE_VERSION, etcd $ETCD_VERSION, toxiproxy $TOXIPROXY_VERSION, kwok $KWOK_VERSION)"
