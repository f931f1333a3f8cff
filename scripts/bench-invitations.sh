#!/usr/bin/env bash
# The invitation benchmark (release build) against a local control plane and Mailpit:
# 1,000 invitations with staggered expiries; prints emails delivered per second and
# the p50/p99 lateness of expiry. Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=$(tests/controlplane/build.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bins/launcher" --bin-dir "$bins" --work-dir "$work" -- cargo bench --locked --bench invitations "$@"
