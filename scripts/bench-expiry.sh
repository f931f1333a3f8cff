#!/usr/bin/env bash
# The expiry benchmark (release build) against a local control plane: 200 time-bound
# RoleBindings with staggered expiries; prints the p50/p99 lateness of revocation as the
# cluster's authorizer answers (SubjectAccessReview turns false). Extra arguments go to
# `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=$(tests/controlplane/build.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bins/launcher" --bin-dir "$bins" --work-dir "$work" -- cargo bench --locked --bench expiry "$@"
