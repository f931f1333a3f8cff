// Command oidc-provider is a real OpenID Connect provider for kube-org's test
// environment, built on github.com/zitadel/oidc/v3 (an OpenID-certified
// implementation). It keeps everything in memory: the users and clients come from a
// JSON file (written by the launcher, which is the one place that defines them), the
// signing key is generated at start, and the person signs in through a plain HTML
// login form, so a test can drive it over HTTP and a browser can use it as is.
//
// Usage:
//
//	oidc-provider --listen 127.0.0.1:PORT --issuer https://127.0.0.1:PORT \
//	  --tls-cert FILE --tls-key FILE --config FILE
//
// What it serves (the discovery document at ISSUER/.well-known/openid-configuration
// lists the endpoints): the authorization code flow with PKCE (S256), the token
// endpoint (client_secret_basic or client_secret_post for confidential clients, none
// for public ones), refresh tokens (scope offline_access), userinfo, introspection,
// revocation and the key set. ID tokens carry:
//
//   - sub: the user's subject (stable, not the email);
//   - email and email_verified (always present, also when false) with scope "email";
//   - groups (a list of strings) with scope "groups";
//   - name and preferred_username with scope "profile".
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// fileConfig is the --config file.
type fileConfig struct {
	Clients []clientConfig `json:"clients"`
	Users   []userConfig   `json:"users"`
}

// clientConfig is one OAuth client.
type clientConfig struct {
	ID string `json:"id"`
	// Secret empty means a public client (PKCE, no client authentication).
	Secret string `json:"secret,omitempty"`
	// RedirectURIs are exact URIs or doublestar globs, e.g. "http://127.0.0.1:*/**".
	RedirectURIs []string `json:"redirectURIs"`
}

// userConfig is one person who can sign in; the login name is the email,
// case-insensitively.
type userConfig struct {
	Subject       string   `json:"subject"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"emailVerified"`
	Password      string   `json:"password"`
	Name          string   `json:"name,omitempty"`
	Groups        []string `json:"groups,omitempty"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("oidc-provider failed", "error", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve HTTPS on")
	issuer := flag.String("issuer", "", "the issuer URL (https://host:port, no trailing slash); must match --listen")
	certFile := flag.String("tls-cert", "", "PEM serving certificate")
	keyFile := flag.String("tls-key", "", "PEM private key of --tls-cert")
	configFile := flag.String("config", "", "JSON file with clients and users")
	flag.Parse()
	if *issuer == "" || *certFile == "" || *keyFile == "" || *configFile == "" {
		flag.Usage()
		return errors.New("--issuer, --tls-cert, --tls-key and --config are required")
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	cfg, err := readConfig(*configFile)
	if err != nil {
		return err
	}
	store, err := newStorage(cfg)
	if err != nil {
		return err
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return fmt.Errorf("generating the token encryption key: %w", err)
	}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                cryptoKey,
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
		SupportedClaims:          slices.Concat(op.DefaultSupportedClaims, []string{"groups"}),
		SupportedScopes:          []string{"openid", "profile", "email", "groups", "offline_access"},
	}, store, op.StaticIssuer(strings.TrimSuffix(*issuer, "/")))
	if err != nil {
		return fmt.Errorf("creating the provider: %w", err)
	}

	mux := http.NewServeMux()
	login := &loginPage{store: store, callback: op.AuthCallbackURL(provider)}
	mux.Handle("GET /login", http.HandlerFunc(login.show))
	mux.Handle("POST /login", op.NewIssuerInterceptor(provider.IssuerFromRequest).Handler(http.HandlerFunc(login.check)))
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("signed out\n"))
	})
	mux.Handle("/", provider)

	server := &http.Server{
		Addr:              *listen,
		Handler:           logRequests(mux),
		ReadHeaderTimeout: 10 * time.Second,
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan error, 1)
	go func() { served <- server.ListenAndServeTLS(*certFile, *keyFile) }()
	slog.Info("serving", "issuer", *issuer, "listen", *listen, "users", len(cfg.Users), "clients", len(cfg.Clients))
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case sig := <-stop:
		slog.Info("stopping", "signal", sig.String())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return server.Shutdown(ctx)
	}
}

func readConfig(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading --config: %w", err)
	}
	var cfg fileConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parsing --config %s: %w", path, err)
	}
	if len(cfg.Clients) == 0 || len(cfg.Users) == 0 {
		return nil, fmt.Errorf("--config %s: needs at least one client and one user", path)
	}
	return &cfg, nil
}

// logRequests logs one line per request (never a query string: it holds codes).
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		began := time.Now()
		next.ServeHTTP(recorder, r)
		slog.Info("request", "method", r.Method, "path", r.URL.Path, "status", recorder.status,
			"duration", time.Since(began).Round(time.Microsecond))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

// loginPage is the sign-in form the authorization endpoint sends the person to
// (GET /login?authRequestID=ID); a correct email and password completes the
// authorization request and continues the flow, a wrong one shows the form again.
type loginPage struct {
	store    *storage
	callback func(context.Context, string) string
}

var loginTemplate = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - kube-org test identity provider</title></head>
<body>
<h1>Sign in</h1>
<p>kube-org test identity provider</p>
{{if .Error}}<p id="error" role="alert" style="color:#b00">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<p><label for="username">Email</label><br><input id="username" name="username" type="email" autocomplete="username" value="{{.Username}}" required></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
</body>
</html>
`))

type loginData struct{ ID, Username, Error string }

func (l *loginPage) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	if _, err := l.store.AuthRequestByID(r.Context(), id); err != nil {
		http.Error(w, "unknown or finished sign-in request", http.StatusBadRequest)
		return
	}
	render(w, http.StatusOK, loginData{ID: id})
}

func (l *loginPage) check(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse the form: "+err.Error(), http.StatusBadRequest)
		return
	}
	id, username := r.PostFormValue("id"), r.PostFormValue("username")
	if err := l.store.checkPassword(id, username, r.PostFormValue("password")); err != nil {
		slog.Info("sign-in refused", "username", username, "reason", err.Error())
		render(w, http.StatusUnauthorized, loginData{ID: id, Username: username, Error: err.Error()})
		return
	}
	slog.Info("signed in", "username", username)
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
}

func render(w http.ResponseWriter, status int, data loginData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := loginTemplate.Execute(w, data); err != nil {
		slog.Error("rendering the login page", "error", err)
	}
}
