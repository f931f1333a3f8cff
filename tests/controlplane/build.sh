#!/usr/bin/env bash
# Builds the real control-plane binaries (etcd, kube-apiserver, kube-controller-manager),
# Mailpit, the OpenID Connect provider (oidc/, on github.com/zitadel/oidc/v3), Helm
# (helm/, helm.sh/helm/v4's own cmd/helm) and gitops-check (gitops/: kstatus from
# sigs.k8s.io/cli-utils and Argo CD's Lua health checks on github.com/yuin/gopher-lua)
# from their official Go modules, pinned by the go.mod/go.sum files beside this script. Binaries are cached outside the repository, keyed by a hash of those pins
# and the Go version, so a second run costs nothing.
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

root=${KUBE_ORG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-org}
mkdir -p "$root"
go_version=$(go version)

# Each binary is cached under a key of its own module's pins and sources, so editing
# the launcher does not rebuild kube-apiserver.
module_key() { # module_key <module dir>
  (echo "$go_version"; cd "$here/$1" && cat go.mod $(ls go.sum 2>/dev/null) $(find . -name '*.go' | sort)) \
    | sha256sum | cut -c1-16
}

declare -A keys
for module in etcd kube mailpit oidc helm gitops launcher; do keys[$module]=$(module_key "$module"); done
cache=$root/bin-$(echo "${keys[*]}" | sha256sum | cut -c1-16)
mkdir -p "$cache"

build() { # build <name> <module dir> <package>
  local name=$1 dir=$2 pkg=$3
  local binary=$root/$name-${keys[$dir]}
  if [ -x "$binary" ]; then
    echo "controlplane: $name cached ($binary)" >&2
  else
    echo "controlplane: building $name (first run only; minutes on 2 cores)" >&2
    local start=$SECONDS
    (cd "$here/$dir" && go build -trimpath -ldflags='-s -w' -o "$binary.tmp" "$pkg")
    mv "$binary.tmp" "$binary"
    echo "controlplane: built $name in $((SECONDS - start))s" >&2
  fi
  ln -f "$binary" "$cache/$name"
}

build etcd etcd .
build mailpit mailpit .
build oidc-provider oidc .
build kube-apiserver kube ./cmd/kube-apiserver
build kube-controller-manager kube ./cmd/kube-controller-manager
build helm helm helm.sh/helm/v4/cmd/helm
build gitops-check gitops .
build launcher launcher .
echo "$cache"
