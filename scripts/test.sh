#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, build, then unit and integration tests
# against a real local control plane (etcd, kube-apiserver, kube-controller-manager)
# and a real SMTP server (Mailpit), all built from their official Go modules and
# cached outside the repository. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "control plane binaries"
bins=$(tests/controlplane/build.sh)

step "lint (cargo fmt, clippy)"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "build"
cargo build --all-targets --locked

work=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
step "tests against a local control plane (logs: $work)"
"$bins/launcher" --bin-dir "$bins" --work-dir "$work" -- cargo test --locked --lib --bins --tests "$@"
