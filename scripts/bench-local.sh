#!/usr/bin/env bash
# Runs one benchmark of benches/ (release build) inside a local control plane and
# Mailpit started for it: `scripts/bench-local.sh NAME [cargo bench args]`, e.g.
# `invitations` (1,000 invitations: emails per second, lateness of expiry) or `expiry`
# (200 time-bound RoleBindings: lateness of revocation as SubjectAccessReview sees it).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=$1
shift
bins=$(tests/controlplane/build.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bins/launcher" --bin-dir "$bins" --work-dir "$work" -- cargo bench --locked --bench "$bench" "$@"
