#!/usr/bin/env bash
# The part of scripts/dev.sh that runs inside the local control plane's environment
# (KUBECONFIG and Mailpit addresses are set by the launcher).
set -euo pipefail
cd "$(dirname "$0")/.."

target/debug/kube-org crds | kubectl apply --server-side -f - >/dev/null
kubectl wait --for condition=Established --timeout=60s crd --all >/dev/null

target/debug/kube-org run --listen 127.0.0.1:8080 \
  --smtp-url "smtp://$KUBE_ORG_MAILPIT_SMTP" --smtp-from kube-org@example.com \
  --accept-base-url http://127.0.0.1:8080 &
operator=$!
trap 'kill -TERM $operator 2>/dev/null; wait $operator' EXIT INT TERM

# The home namespace is created by the operator; create it here too so the examples
# apply even before the operator has reconciled the Organization.
kubectl apply --server-side -f examples/01-organization.yaml
kubectl create namespace org-acme --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null
kubectl apply --server-side -f examples/

cat <<MSG

kube-org is running (operator log above and below).
  export KUBECONFIG=$KUBECONFIG
  kubectl get kube-org -A
  Mailpit (invitation emails): $KUBE_ORG_MAILPIT_API
Press Ctrl-C to stop everything.
MSG
wait $operator
