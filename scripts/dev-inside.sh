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

# Invitees of organizations with spec.invitations.requireLogin (examples/06-identity.yaml)
# sign in at the provider; the success page offers a kubeconfig for this cluster.
kubectl create secret generic kube-org-oidc -n kube-org-system \
  --from-literal=client-secret="$KUBE_ORG_TEST_OIDC_CLIENT_SECRET" --dry-run=client -o yaml |
  kubectl apply --server-side -f - >/dev/null
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
cluster_ca="$(dirname "$KUBECONFIG")/cluster-ca.pem"
ca_data=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [ -n "$ca_data" ]; then
  echo "$ca_data" | base64 -d >"$cluster_ca"
else
  cp "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')" "$cluster_ca"
fi

target/debug/kube-org run --listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:8081 --impersonate kube-org-system/kube-org \
  --smtp-url "smtp://$KUBE_ORG_MAILPIT_SMTP" --smtp-from kube-org@example.com \
  --accept-base-url http://127.0.0.1:8080 \
  --oidc-issuer-url "$KUBE_ORG_TEST_OIDC_ISSUER" --oidc-client-id "$KUBE_ORG_TEST_OIDC_CLIENT_ID" \
  --oidc-secret kube-org-system/kube-org-oidc --oidc-ca-file "$KUBE_ORG_TEST_OIDC_CA" \
  --cluster-server-url "$server" --cluster-ca-file "$cluster_ca" \
  --oidc-kubectl-client-id "$KUBE_ORG_TEST_OIDC_PUBLIC_CLIENT_ID" &
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
  Organization globex (examples/06-identity.yaml) binds oidc:<email> and asks invitees to
  sign in; try: kubectl apply -f - <<<'{"apiVersion":"kube-org.io/v1alpha1","kind":"Invitation",
    "metadata":{"name":"bob","namespace":"org-globex"},"spec":{"email":"bob@example.com",
    "roles":[{"role":"viewer","scope":{"resourceType":"deployment","all":true}}]}}'
  then open the link from Mailpit and sign in as bob@example.com / bob-password.
Press Ctrl-C to stop everything.
MSG
wait $operator
