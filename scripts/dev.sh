#!/usr/bin/env bash
# Runs kube-org locally with no cluster: starts a local control plane, Mailpit and an
# OpenID Connect provider with test users (the launcher), installs the CRDs, starts the
# operator and applies examples/. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

bins=$(tests/controlplane/build.sh)
cargo build --locked --bin kube-org
work=${KUBE_ORG_DEV_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kube-org-dev.XXXXXX")}
exec "$bins/launcher" --bin-dir "$bins" --work-dir "$work" -- scripts/dev-inside.sh
