#!/usr/bin/env bash
# Runs the access benchmark (benches/access.rs) N times (default 3) for each of two
# operators, alternating: this tree's release build and the one built from BASE (a git
# revision, default HEAD). Each run gets a fresh local control plane. Prints the median
# of every figure of the benchmark's summary for both.
#
#   scripts/bench-compare.sh [N]          BASE=<rev>, BENCH_MEMBERS, BENCH_RESOURCES,
#                                         BENCH_IDLE_SECONDS, BENCH_QUICK pass through
#
# BASE's operator is built in a temporary git worktree with its own target directory,
# ~/.cache/kube-org/bench-target (reused between calls), and kept as
# ~/.cache/kube-org/bench-bin/kube-org-<commit>. Logs of every run stay in a directory
# printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
base=${BASE:-HEAD}
root=${KUBE_ORG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-org}

rev=$(git rev-parse --verify "$base^{commit}")
base_bin=$root/bench-bin/kube-org-$rev
if [ ! -x "$base_bin" ]; then
  echo "bench-compare: building the operator of $base ($rev)" >&2
  tree=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-base.XXXXXX")
  git worktree add --quiet --detach "$tree" "$rev"
  trap 'git worktree remove --force "$tree" 2>/dev/null || true' EXIT
  (cd "$tree" && CARGO_TARGET_DIR=$root/bench-target cargo build --release --locked --bin kube-org)
  mkdir -p "$root/bench-bin"
  cp "$root/bench-target/release/kube-org" "$base_bin.tmp"
  mv "$base_bin.tmp" "$base_bin"
  git worktree remove --force "$tree"
  trap - EXIT
fi

echo "bench-compare: building this tree (release)" >&2
cargo build --release --benches --locked
current_bin=$PWD/target/release/kube-org
bins=$(tests/controlplane/build.sh)
logs=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-bench-compare.XXXXXX")

run() { # run <label> <operator binary> <index>
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/kube-org-bench.XXXXXX")
  echo "bench-compare: run $3 of $runs, $1 ($2)" >&2
  KUBE_ORG_BIN=$2 "$bins/launcher" --bin-dir "$bins" --work-dir "$work" -- \
    cargo bench --locked --bench access >"$logs/$1-$3.log" 2>&1 \
    || { echo "bench-compare: run failed, see $logs/$1-$3.log" >&2; tail -20 "$logs/$1-$3.log" >&2; exit 1; }
  rm -rf "$work"
}

for i in $(seq 1 "$runs"); do
  # Alternate which goes first, so a drift of the machine hits both alike.
  if [ $((i % 2)) -eq 1 ]; then
    run current "$current_bin" "$i"; run base "$base_bin" "$i"
  else
    run base "$base_bin" "$i"; run current "$current_bin" "$i"
  fi
done

# The summary lines ("figure: value unit") after "== summary ==", as "label figure value unit".
summaries() {
  for f in "$logs"/*.log; do
    label=$(basename "$f" .log); label=${label%-*}
    sed -n '/^== summary ==$/,$p' "$f" | grep -E '^[A-Za-z0-9_.-]+: -?[0-9.]+ [A-Za-z]+$' \
      | awk -v l="$label" '{sub(":", "", $1); print l, $1, $2, $3}'
  done
}

echo
echo "median of $runs runs: current = this tree, base = $base (${rev:0:12})"
printf '%-44s %14s %14s  %s\n' figure current base unit
summaries | sort -k2,2 -k1,1 -k3,3g | awk '
  { key = $2; unit[key] = $4; v[key, $1, ++n[key, $1]] = $3; figs[key] = 1 }
  function median(key, l,   c, m) {
    c = n[key, l]; if (c == 0) return "-"
    m = (c % 2) ? v[key, l, (c + 1) / 2] : (v[key, l, c / 2] + v[key, l, c / 2 + 1]) / 2
    return m
  }
  END { for (k in figs) printf "%-44s %14s %14s  %s\n", k, median(k, "current"), median(k, "base"), unit[k] }
' | sort
echo "logs: $logs"
