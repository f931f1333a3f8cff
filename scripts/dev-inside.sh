#!/usr/bin/env bash
# The part of scripts/dev.sh that runs inside the local control plane's environment
# (KUBECONFIG, Mailpit addresses and the KUBE_ORG_TEST_OIDC_* variables of the
# OpenID Connect provider are set by the launcher).
set -euo pipefail
cd "$(dirname "$0")/.."

target/debug/kube-org crds | kubectl apply --server-side -f - >/dev/null
kubectl apply --server-side -f manifests/access-clusterroles.yaml >/dev/null
kubectl wait --for condition=Established --timeout=60s crd --all >/dev/null

# The operator runs with exactly the permissions manifests/ gives its ServiceAccount,
# as it would in a cluster; kube-controller-manager aggregates its ClusterRole.
kubectl apply --server-side -f manifests/namespace.yaml -f manifests/rbac.yaml -f manifests/admission-policy.yaml >/dev/null
service_account=system:serviceaccount:kube-org-system:kube-org
for _ in $(seq 1 100); do
  kubectl auth can-i bind clusterroles/view --as "$service_account" >/dev/null 2>&1 && break
  sleep 0.2
done

target/debug/kube-org run --listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:8081 --impersonate kube-org-system/kube-org \
  --smtp-url "smtp://$KUBE_ORG_MAILPIT_SMTP" --smtp-from kube-org@example.com \
  --accept-base-url http://127.0.0.1:8080 &
operator=$!
trap 'kill -TERM $operator 2>/dev/null; wait $operator' EXIT INT TERM

# The organization first: kube-org creates its home namespace, where the rest lives.
kubectl apply --server-side -f examples/01-organization.yaml
for _ in $(seq 1 100); do
  kubectl get namespace org-acme >/dev/null 2>&1 && break
  sleep 0.1
done
kubectl apply --server-side -f examples/

cat <<MSG

kube-org is running (its log is above and below).
  export KUBECONFIG=$KUBECONFIG
  kubectl get kube-org -A
  kubectl auth can-i create deployments --as bob@example.com -n acme-prod
  Mailpit (invitation emails): $KUBE_ORG_MAILPIT_API
  accept endpoint: http://127.0.0.1:8080/invitations/accept
  metrics, health, readiness: http://127.0.0.1:8081/metrics /healthz /readyz
  OpenID Connect provider (kube-apiserver trusts its ID tokens): $KUBE_ORG_TEST_OIDC_ISSUER
    sign in as $KUBE_ORG_TEST_OIDC_USER, password $KUBE_ORG_TEST_OIDC_PASSWORD
    (the cluster calls them ${KUBE_ORG_TEST_OIDC_USERNAME_PREFIX}$KUBE_ORG_TEST_OIDC_USER; all users: $KUBE_ORG_TEST_OIDC_USERS)
    clients: $KUBE_ORG_TEST_OIDC_CLIENT_ID (secret $KUBE_ORG_TEST_OIDC_CLIENT_SECRET), $KUBE_ORG_TEST_OIDC_PUBLIC_CLIENT_ID (public, PKCE)
    its CA: $KUBE_ORG_TEST_OIDC_CA
Press Ctrl-C to stop everything.
MSG
wait $operator
