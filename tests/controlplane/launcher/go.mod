module github.com/kube-org/kube-org/tests/controlplane/launcher

go 1.25.0
