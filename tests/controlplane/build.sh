#!/usr/bin/env bash
# Builds the real control-plane binaries (etcd, kube-apiserver, kube-controller-manager)
# and Mailpit from their official Go modules, pinned by the go.mod/go.sum files beside
# this script. Binaries are cached outside the repository, keyed by a hash of those pins
# and the Go version, so a second run costs nothing.
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

key=$( (go version; cd "$here" && cat etcd/go.mod etcd/go.sum etcd/main.go kube/go.mod kube/go.sum \
        kube/cmd/*/main.go mailpit/go.mod mailpit/go.sum mailpit/main.go launcher/go.mod launcher/main.go) \
        | sha256sum | cut -c1-16)
cache=${KUBE_ORG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-org}/controlplane-$key
mkdir -p "$cache"

build() { # build <name> <module dir> <package>
  local name=$1 dir=$2 pkg=$3
  if [ -x "$cache/$name" ]; then
    echo "controlplane: $name cached in $cache" >&2
    return
  fi
  echo "controlplane: building $name (first run only; minutes on 2 cores)" >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags='-s -w' -o "$cache/$name.tmp" "$pkg")
  mv "$cache/$name.tmp" "$cache/$name"
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build etcd etcd .
build mailpit mailpit .
build kube-apiserver kube ./cmd/kube-apiserver
build kube-controller-manager kube ./cmd/kube-controller-manager
build launcher launcher .
echo "$cache"
