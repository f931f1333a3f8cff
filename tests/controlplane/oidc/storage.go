package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	idTokenLifetime      = time.Hour
	accessTokenLifetime  = time.Hour
	refreshTokenLifetime = 24 * time.Hour
	// groupsScope asks for the "groups" claim (the convention of Dex and others).
	groupsScope = "groups"
)

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
	_ op.HasRedirectGlobs          = (*client)(nil)
	_ op.AuthRequest               = (*authRequest)(nil)
	_ op.RefreshTokenRequest       = (*refreshTokenRequest)(nil)
)

// storage is the provider's whole state, in memory.
type storage struct {
	mu            sync.Mutex
	clients       map[string]*client
	users         map[string]*userConfig // by subject
	authRequests  map[string]*authRequest
	codes         map[string]string // code -> auth request id
	tokens        map[string]*token
	refreshTokens map[string]*refreshToken
	key           *signingKey
}

func newStorage(cfg *fileConfig) (*storage, error) {
	s := &storage{
		clients:       map[string]*client{},
		users:         map[string]*userConfig{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]string{},
		tokens:        map[string]*token{},
		refreshTokens: map[string]*refreshToken{},
	}
	for _, c := range cfg.Clients {
		if c.ID == "" || len(c.RedirectURIs) == 0 {
			return nil, fmt.Errorf("client %q: needs an id and redirect URIs", c.ID)
		}
		s.clients[c.ID] = &client{clientConfig: c}
	}
	emails := map[string]bool{}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		key := strings.ToLower(u.Email)
		if u.Subject == "" || u.Email == "" || u.Password == "" {
			return nil, fmt.Errorf("user %q: needs a subject, an email and a password", u.Email)
		}
		if s.users[u.Subject] != nil || emails[key] {
			return nil, fmt.Errorf("user %q: subject or email used twice", u.Email)
		}
		s.users[u.Subject], emails[key] = u, true
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the signing key: %w", err)
	}
	s.key = &signingKey{id: randomID(), key: rsaKey}
	return s, nil
}

// randomID is 128 random bits in hex, for request, token and key ids.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// checkPassword completes the authorization request id when the email (any case)
// and password belong to a user. Unknown email and wrong password answer alike.
func (s *storage) checkPassword(id, email, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	request, ok := s.authRequests[id]
	if !ok {
		return errors.New("this sign-in request is unknown or finished; start again")
	}
	for _, u := range s.users {
		if strings.EqualFold(u.Email, email) && subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1 {
			request.Subject, request.done, request.authTime = u.Subject, true, time.Now()
			return nil
		}
	}
	return errors.New("wrong email or password")
}

// --- authorization requests and codes

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if slices.Equal(req.Prompt, []string{oidc.PromptNone}) {
		return nil, oidc.ErrLoginRequired() // there is no session to reuse
	}
	r := &authRequest{
		ID:           randomID(),
		ClientID:     req.ClientID,
		RedirectURI:  req.RedirectURI,
		State:        req.State,
		Nonce:        req.Nonce,
		Scopes:       req.Scopes,
		ResponseType: req.ResponseType,
		ResponseMode: req.ResponseMode,
		Subject:      userID,
	}
	if req.CodeChallenge != "" {
		r.CodeChallenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authRequests[r.ID] = r
	return r.copy(), nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authRequests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return r.copy(), nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs once the code has been exchanged: the code is single use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, requestID := range s.codes {
		if requestID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// --- tokens

// tokenOrigin returns the client, authentication time and methods behind a token request.
func tokenOrigin(request op.TokenRequest) (clientID string, authTime time.Time, amr []string) {
	switch r := request.(type) {
	case *authRequest:
		return r.ClientID, r.authTime, r.GetAMR()
	case *refreshTokenRequest:
		return r.ClientID, r.AuthTime, r.AMR
	}
	return "", time.Time{}, nil
}

func (s *storage) newAccessToken(clientID, refreshTokenID string, request op.TokenRequest) *token {
	t := &token{
		ID:             randomID(),
		ClientID:       clientID,
		RefreshTokenID: refreshTokenID,
		Subject:        request.GetSubject(),
		Audience:       request.GetAudience(),
		Scopes:         request.GetScopes(),
		Expiration:     time.Now().Add(accessTokenLifetime),
	}
	s.tokens[t.ID] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, request op.TokenRequest) (string, time.Time, error) {
	clientID, _, _ := tokenOrigin(request)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccessToken(clientID, "", request)
	return t.ID, t.Expiration, nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, request op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	clientID, authTime, amr := tokenOrigin(request)
	s.mu.Lock()
	defer s.mu.Unlock()
	if currentRefreshToken != "" {
		// Rotation: the refresh token used is spent, with the access token it gave.
		current, ok := s.refreshTokens[currentRefreshToken]
		if !ok {
			return "", "", time.Time{}, errors.New("invalid refresh token")
		}
		delete(s.refreshTokens, currentRefreshToken)
		delete(s.tokens, current.AccessTokenID)
		if current.Expiration.Before(time.Now()) {
			return "", "", time.Time{}, errors.New("expired refresh token")
		}
		authTime, amr = current.AuthTime, current.AMR
	}
	refreshID := randomID()
	access := s.newAccessToken(clientID, refreshID, request)
	s.refreshTokens[refreshID] = &refreshToken{
		ID:            refreshID,
		ClientID:      clientID,
		Subject:       request.GetSubject(),
		Audience:      request.GetAudience(),
		Scopes:        request.GetScopes(),
		AuthTime:      authTime,
		AMR:           amr,
		Expiration:    time.Now().Add(refreshTokenLifetime),
		AccessTokenID: access.ID,
	}
	return access.ID, refreshID, access.Expiration, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, id string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[id]
	if !ok {
		return nil, errors.New("invalid refresh token")
	}
	copied := *t
	return &refreshTokenRequest{copied}, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if t.ClientID == clientID && t.Subject == userID {
			delete(s.tokens, id)
			delete(s.refreshTokens, t.RefreshTokenID)
		}
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _, id string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[id]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.Subject, t.ID, nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenOrID]; ok {
		if t.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued for this client")
		}
		delete(s.tokens, tokenOrID)
		return nil
	}
	if t, ok := s.refreshTokens[tokenOrID]; ok {
		if t.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued for this client")
		}
		delete(s.refreshTokens, tokenOrID)
		delete(s.tokens, t.AccessTokenID)
	}
	return nil // an unknown token is as good as revoked
}

// --- keys

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

// --- clients

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id] // never written after start
	if !ok {
		return nil, fmt.Errorf("client %q not found", id)
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errors.New("unknown client or wrong secret")
	}
	return nil
}

// --- claims

// SetUserinfoFromScopes is left empty: SetUserinfoFromRequest does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, request op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(info, request.GetSubject(), scopes)
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || t.Expiration.Before(time.Now()) {
		return errors.New("token is invalid or has expired")
	}
	return s.setUserinfo(info, t.Subject, t.Scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, introspection *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || t.Expiration.Before(time.Now()) {
		return errors.New("token is invalid or has expired")
	}
	if !slices.Contains(t.Audience, clientID) {
		return errors.New("token is not valid for this client")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, subject, t.Scopes); err != nil {
		return err
	}
	introspection.SetUserInfo(info)
	introspection.Scope = t.Scopes
	introspection.ClientID = t.ClientID
	introspection.Expiration = oidc.FromTime(t.Expiration)
	return nil
}

// setUserinfo fills the claims the scopes ask for.
func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.users[subject] // never written after start
	if !ok {
		return fmt.Errorf("user %q not found", subject)
	}
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeOpenID:
			info.Subject = u.Subject
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = oidc.Bool(u.EmailVerified)
			// The library omits a false email_verified; relying parties (and the
			// apiserver's claim validation rule) should see it said.
			info.AppendClaims("email_verified", u.EmailVerified)
		case oidc.ScopeProfile:
			info.Name = u.Name
			info.PreferredUsername = u.Email
		case groupsScope:
			info.AppendClaims("groups", append([]string{}, u.Groups...))
		}
	}
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile grants are not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grants are not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// --- types

// client is one configured OAuth client: confidential (a web application with a
// secret) or public (native, PKCE only). Redirect URIs are matched exactly or as
// globs, so a loopback redirect may use any port.
type client struct{ clientConfig }

func (c *client) GetID() string                        { return c.ID }
func (c *client) RedirectURIs() []string               { return c.clientConfig.RedirectURIs }
func (c *client) RedirectURIGlobs() []string           { return c.clientConfig.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string     { return c.clientConfig.RedirectURIs }
func (c *client) PostLogoutRedirectURIGlobs() []string { return c.clientConfig.RedirectURIs }
func (c *client) ApplicationType() op.ApplicationType {
	if c.Secret == "" {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic // client_secret_post is accepted too (AuthMethodPost)
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string           { return "/login?authRequestID=" + url.QueryEscape(id) }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return idTokenLifetime }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
func (c *client) IsScopeAllowed(scope string) bool { return scope == groupsScope }

// IDTokenUserinfoClaimsAssertion puts email and profile claims into the ID token
// even though an access token is issued too: the apiserver only sees the ID token.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

type authRequest struct {
	ID            string
	ClientID      string
	RedirectURI   string
	State         string
	Nonce         string
	Scopes        []string
	ResponseType  oidc.ResponseType
	ResponseMode  oidc.ResponseMode
	CodeChallenge *oidc.CodeChallenge
	Subject       string
	done          bool
	authTime      time.Time
}

// copy is what the library gets, so that a sign-in completing meanwhile never
// races with its reads.
func (r *authRequest) copy() *authRequest { c := *r; return &c }

func (r *authRequest) GetID() string                         { return r.ID }
func (r *authRequest) GetACR() string                        { return "" }
func (r *authRequest) GetAudience() []string                 { return []string{r.ClientID} }
func (r *authRequest) GetAuthTime() time.Time                { return r.authTime }
func (r *authRequest) GetClientID() string                   { return r.ClientID }
func (r *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return r.CodeChallenge }
func (r *authRequest) GetNonce() string                      { return r.Nonce }
func (r *authRequest) GetRedirectURI() string                { return r.RedirectURI }
func (r *authRequest) GetResponseType() oidc.ResponseType    { return r.ResponseType }
func (r *authRequest) GetResponseMode() oidc.ResponseMode    { return r.ResponseMode }
func (r *authRequest) GetScopes() []string                   { return r.Scopes }
func (r *authRequest) GetState() string                      { return r.State }
func (r *authRequest) GetSubject() string                    { return r.Subject }
func (r *authRequest) Done() bool                            { return r.done }
func (r *authRequest) GetAMR() []string {
	if r.done {
		return []string{"pwd"}
	}
	return nil
}

type token struct {
	ID, ClientID, RefreshTokenID, Subject string
	Audience, Scopes                      []string
	Expiration                            time.Time
}

type refreshToken struct {
	ID, ClientID, Subject, AccessTokenID string
	Audience, Scopes, AMR                []string
	AuthTime, Expiration                 time.Time
}

type refreshTokenRequest struct{ refreshToken }

func (r *refreshTokenRequest) GetAMR() []string            { return r.AMR }
func (r *refreshTokenRequest) GetAudience() []string       { return r.Audience }
func (r *refreshTokenRequest) GetAuthTime() time.Time      { return r.AuthTime }
func (r *refreshTokenRequest) GetClientID() string         { return r.ClientID }
func (r *refreshTokenRequest) GetScopes() []string         { return r.Scopes }
func (r *refreshTokenRequest) GetSubject() string          { return r.Subject }
func (r *refreshTokenRequest) SetCurrentScopes(s []string) { r.Scopes = s }

// signingKey signs ID tokens (RS256, a key generated at every start).
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the signing key's public half, served in the key set.
type publicKey struct{ *signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }
