# kube-org — the commands a developer needs. Each works on a fresh machine.
.PHONY: run test crds lint build controlplane bench-invitations

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

## crds: regenerate crds/ from the Rust types.
crds:
	cargo run --quiet -- crds --out-dir crds

## lint: formatting and clippy, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

build:
	cargo build --all-targets --locked

## controlplane: build (or reuse) etcd, kube-apiserver, kube-controller-manager, Mailpit.
controlplane:
	tests/controlplane/build.sh
