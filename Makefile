# kube-org — the commands a developer needs. Each works on a fresh machine.
.PHONY: run test crds lint build controlplane

## run: local control plane + CRDs + the operator + examples (no cluster needed).
run:
	scripts/dev.sh

## test: build everything (control plane, Mailpit, crates) and run the whole suite.
test:
	scripts/test.sh

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
