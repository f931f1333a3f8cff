#!/usr/bin/env bash
# The invitation benchmark (release build) against a local control plane and Mailpit:
# 1,000 invitations with staggered expiries; prints emails delivered per second and
# the p50/p99 lateness of expiry. Extra arguments go to `cargo bench`.
exec "$(dirname "$0")/bench-local.sh" invitations "$@"
