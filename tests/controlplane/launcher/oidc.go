package main

// The OpenID Connect provider of the test environment and what kube-apiserver is told
// about it. This file is the one place that defines the test identities.
//
// The provider (tests/controlplane/oidc, built on github.com/zitadel/oidc/v3) serves
// https://127.0.0.1:PORT with a certificate from the launcher's CA. People sign in on
// its login form with their email and password. Its ID tokens carry sub, email and
// email_verified (scope "email"), groups (scope "groups") and name (scope "profile").
//
// Test users (fixed passwords; the login name is the email):
//
//	email                   password                 email_verified  groups
//	alice@example.com       alice-password           true            developers
//	bob@example.com         bob-password             true            operators
//	Dora@Example.com        dora-password            true            (none)
//	unverified@example.com  unverified-password      false           developers
//
// Dora's address is mixed-case on purpose: the apiserver names her
// "oidc:Dora@Example.com", exactly as the provider spells it.
//
// Clients: "kube-org" is confidential (a secret generated at every start; authorization
// code, PKCE optional, client_secret_basic or _post) and "kubectl" is public (PKCE, no
// secret, as kubelogin uses it). Both accept any redirect URI on http://127.0.0.1 or
// http://localhost with any port and path.
//
// kube-apiserver trusts the provider through a structured AuthenticationConfiguration
// (WORK_DIR/authentication-config.json): ID tokens issued to either client, with
//
//	username = "oidc:" + claims.email
//	groups   = "oidc:" + each of claims.groups
//	uid      = claims.sub
//
// and refused unless claims.email_verified is true (a token without email_verified is
// refused too).
//
// Exported to the command (and written to WORK_DIR/env):
//
//	KUBE_ORG_TEST_OIDC_ISSUER            https://127.0.0.1:PORT
//	KUBE_ORG_TEST_OIDC_CA                PEM file of the CA that signed its certificate
//	KUBE_ORG_TEST_OIDC_CLIENT_ID         kube-org
//	KUBE_ORG_TEST_OIDC_CLIENT_SECRET     that client's secret
//	KUBE_ORG_TEST_OIDC_PUBLIC_CLIENT_ID  kubectl
//	KUBE_ORG_TEST_OIDC_USERNAME_PREFIX   oidc:
//	KUBE_ORG_TEST_OIDC_GROUPS_PREFIX     oidc:
//	KUBE_ORG_TEST_OIDC_USERS             JSON file: [{subject, email, emailVerified, password, name, groups}]
//	KUBE_ORG_TEST_OIDC_USER              alice@example.com (one user to try by hand)
//	KUBE_ORG_TEST_OIDC_PASSWORD          alice-password

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

const (
	// oidcProvider is the provider's binary in --bin-dir and its component name.
	oidcProvider = "oidc-provider"

	oidcClientID       = "kube-org"
	oidcPublicClientID = "kubectl"
	// oidcUsernamePrefix and oidcGroupsPrefix are the apiserver's claim mapping.
	oidcUsernamePrefix = "oidc:"
	oidcGroupsPrefix   = "oidc:"
	// anyLoopbackPort matches a port number (1-99999) in a redirect URI glob.
	anyLoopbackPort = "{[1-9],[1-9][0-9],[1-9][0-9][0-9],[1-9][0-9][0-9][0-9],[1-9][0-9][0-9][0-9][0-9]}"
)

// oidcUser is one test identity, as the provider reads it and tests see it.
type oidcUser struct {
	Subject       string   `json:"subject"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"emailVerified"`
	Password      string   `json:"password"`
	Name          string   `json:"name,omitempty"`
	Groups        []string `json:"groups"`
}

// oidcUsers are the test identities (the table at the top of this file).
var oidcUsers = []oidcUser{
	{Subject: "user-alice", Email: "alice@example.com", EmailVerified: true, Password: "alice-password",
		Name: "Alice", Groups: []string{"developers"}},
	{Subject: "user-bob", Email: "bob@example.com", EmailVerified: true, Password: "bob-password",
		Name: "Bob", Groups: []string{"operators"}},
	{Subject: "user-dora", Email: "Dora@Example.com", EmailVerified: true, Password: "dora-password",
		Name: "Dora", Groups: []string{}},
	{Subject: "user-unverified", Email: "unverified@example.com", EmailVerified: false, Password: "unverified-password",
		Name: "Unverified", Groups: []string{"developers"}},
}

// oidcClient is one OAuth client as the provider reads it.
type oidcClient struct {
	ID           string   `json:"id"`
	Secret       string   `json:"secret,omitempty"`
	RedirectURIs []string `json:"redirectURIs"`
}

// oidcSetup is the provider's configuration, written under the work dir.
type oidcSetup struct {
	issuer, caPath, clientSecret                    string
	providerConfig, usersFile, authenticationConfig string
}

// writeOIDCSetup writes the provider's configuration (clients and users), the users
// for tests, and kube-apiserver's AuthenticationConfiguration.
func writeOIDCSetup(p plane, creds *credentials) (*oidcSetup, error) {
	dir := p.path("oidc")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generating the client secret: %w", err)
	}
	s := &oidcSetup{
		issuer:               fmt.Sprintf("https://127.0.0.1:%d", p.oidcPort),
		caPath:               p.pki.caCert,
		clientSecret:         hex.EncodeToString(secret),
		providerConfig:       filepath.Join(dir, "provider.json"),
		usersFile:            filepath.Join(dir, "users.json"),
		authenticationConfig: p.path("authentication-config.json"),
	}
	redirects := []string{
		"http://127.0.0.1:" + anyLoopbackPort + "{,/**}",
		"http://localhost:" + anyLoopbackPort + "{,/**}",
	}
	provider := map[string]any{
		"clients": []oidcClient{
			{ID: oidcClientID, Secret: s.clientSecret, RedirectURIs: redirects},
			{ID: oidcPublicClientID, RedirectURIs: redirects},
		},
		"users": oidcUsers,
	}
	authentication := map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"jwt": []any{map[string]any{
			"issuer": map[string]any{
				"url":                  s.issuer,
				"certificateAuthority": string(creds.caPEM),
				"audiences":            []string{oidcClientID, oidcPublicClientID},
				"audienceMatchPolicy":  "MatchAny",
			},
			"claimValidationRules": []any{map[string]any{
				"expression": "claims.?email_verified.orValue(false) == true",
				"message":    "the email address is not verified (email_verified must be true)",
			}},
			"claimMappings": map[string]any{
				"username": map[string]any{"expression": fmt.Sprintf("%q + claims.email", oidcUsernamePrefix)},
				"groups":   map[string]any{"claim": "groups", "prefix": oidcGroupsPrefix},
				"uid":      map[string]any{"claim": "sub"},
			},
		}},
	}
	for _, f := range []struct {
		path  string
		value any
		perm  os.FileMode
	}{
		{s.providerConfig, provider, 0o600},
		{s.usersFile, oidcUsers, 0o644},
		{s.authenticationConfig, authentication, 0o644},
	} {
		data, err := json.MarshalIndent(f.value, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", f.path, err)
		}
		if err := os.WriteFile(f.path, append(data, '\n'), f.perm); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	return s, nil
}

// env is what tests (and people) need to sign in at the provider.
func (s *oidcSetup) env() []envVar {
	first := oidcUsers[0]
	return []envVar{
		{"KUBE_ORG_TEST_OIDC_ISSUER", s.issuer},
		{"KUBE_ORG_TEST_OIDC_CA", s.caPath},
		{"KUBE_ORG_TEST_OIDC_CLIENT_ID", oidcClientID},
		{"KUBE_ORG_TEST_OIDC_CLIENT_SECRET", s.clientSecret},
		{"KUBE_ORG_TEST_OIDC_PUBLIC_CLIENT_ID", oidcPublicClientID},
		{"KUBE_ORG_TEST_OIDC_USERNAME_PREFIX", oidcUsernamePrefix},
		{"KUBE_ORG_TEST_OIDC_GROUPS_PREFIX", oidcGroupsPrefix},
		{"KUBE_ORG_TEST_OIDC_USERS", s.usersFile},
		{"KUBE_ORG_TEST_OIDC_USER", first.Email},
		{"KUBE_ORG_TEST_OIDC_PASSWORD", first.Password},
	}
}

// discoveryProbe is ready when the provider serves its discovery document over TLS
// (verified against the CA) and names the expected issuer, which is exactly what
// kube-apiserver will check.
func discoveryProbe(client *http.Client, issuer string) probeFunc {
	url := issuer + "/.well-known/openid-configuration"
	return func(ctx context.Context) error {
		body, err := getOK(ctx, client, url, 64<<10)
		if err != nil {
			return err
		}
		var discovery struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &discovery); err != nil {
			return fmt.Errorf("GET %s: not a discovery document: %w", url, err)
		}
		if discovery.Issuer != issuer || discovery.JWKSURI == "" {
			return fmt.Errorf("GET %s: issuer %q and jwks_uri %q, want issuer %q and a key set",
				url, discovery.Issuer, discovery.JWKSURI, issuer)
		}
		return nil
	}
}
