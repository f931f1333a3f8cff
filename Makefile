# kube-org — the commands a developer needs. Each works on a fresh machine.
.PHONY: run test crds lint build controlplane bench-access bench-access-large bench-compare bench-invitations bench-expiry static

## run: local control plane + CRDs + the operator + examples (no cluster needed).
run:
	scripts/dev.sh

## test: build everything (control plane, Mailpit, crates) and run the whole suite.
test:
	scripts/test.sh

## bench-invitations: 1,000 invitations against a local control plane (release build);
## prints emails delivered per second and the p50/p99 lateness of expiry.
bench-invitations:
	scripts/bench-invitations.sh

## bench-expiry: 200 time-bound RoleBindings expiring 300 ms apart on a local control
## plane (release build); prints the p50/p99 lateness of revocation as the cluster's
## authorizer answers (SubjectAccessReview) and the operator's writes meanwhile.
bench-expiry:
	scripts/bench-local.sh expiry

## crds: regenerate crds/ from the Rust types (and the Helm chart's copy).
crds:
	cargo run --quiet -- crds --out-dir crds
	cp crds/*.kube-org.io.yaml charts/kube-org/crds/

## lint: formatting and clippy, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

build:
	cargo build --all-targets --locked

## controlplane: build (or reuse) etcd, kube-apiserver, kube-controller-manager, Mailpit,
## the OpenID Connect provider.
controlplane:
	tests/controlplane/build.sh

## bench-access: converge 1,000 members x 100 resources on a local control plane from a
## cold operator start; print time to the first and to every correct native RoleBinding,
## to every status, writes by resource/verb, peak RSS, reaction times during the converge,
## idle and restart writes (BENCH_IDLE_SECONDS, BENCH_QUICK=1, KUBE_ORG_BIN: see
## benches/access.rs).
bench-access:
	cargo build --release --benches --locked
	bins=$$(tests/controlplane/build.sh) && work=$$(mktemp -d) && \
	  "$$bins/launcher" --bin-dir "$$bins" --work-dir "$$work" -- cargo bench --locked --bench access

## bench-access-large: the same at 10,000 members x 1,000 resource namespaces.
bench-access-large:
	BENCH_MEMBERS=10000 BENCH_RESOURCES=1000 $(MAKE) bench-access

## bench-compare: the access benchmark N times (default 3), alternating this tree's
## operator with the one built from BASE (default HEAD); medians of each figure.
bench-compare:
	scripts/bench-compare.sh $(N)

## static: the release binaries, statically linked (what the Dockerfile ships).
static:
	RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target x86_64-unknown-linux-gnu --bins
