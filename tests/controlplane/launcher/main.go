// Command launcher starts a throwaway control plane for kube-org's integration tests:
// etcd, a real OpenID Connect provider (tests/controlplane/oidc, on zitadel/oidc),
// kube-apiserver (trusting that provider through a structured authentication
// configuration), kube-controller-manager (garbage collector and namespace controllers
// only) and a Mailpit SMTP server, all on free loopback ports with freshly generated
// certificates. It can run a command against that control plane and then tear
// everything down, so no test depends on a shared or pre-existing cluster.
//
// Usage:
//
//	launcher --bin-dir DIR --work-dir DIR [--print-env] [-- COMMAND ARGS...]
//
// With a command, the launcher adds KUBECONFIG, KUBE_ORG_MAILPIT_SMTP,
// KUBE_ORG_MAILPIT_API, KUBE_ORG_MAILPIT_BIN, KUBE_ORG_CONTROLPLANE_DIR and the
// KUBE_ORG_TEST_OIDC_* variables (see oidc.go) to its environment, waits for it, stops
// everything and exits with the command's exit code. Without one, it prints those
// variables (they are also written to WORK_DIR/env) and runs until SIGINT, SIGTERM or
// SIGHUP.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds each component's startup; kube-apiserver on two busy cores
	// is the slow one.
	readyTimeout = 90 * time.Second
	// stopTimeout is how long a component (or the command) gets after SIGTERM
	// before it is killed.
	stopTimeout  = 10 * time.Second
	probeTimeout = 2 * time.Second
	pollInterval = 200 * time.Millisecond
	logTailLines = 40

	// controllers are the only kube-controller-manager controllers kube-org relies on:
	// ownerReference cascading deletion, namespace finalization, and the aggregation
	// that fills the built-in admin, edit and view ClusterRoles with their rules.
	controllers          = "garbage-collector-controller,namespace-controller,clusterrole-aggregation-controller"
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	serviceClusterRange  = "10.0.0.0/24"
	adminUser            = "kube-org-admin"
)

// components lists the binaries expected in --bin-dir, in start order: the identity
// provider before kube-apiserver, which fetches its discovery document.
var components = []string{"etcd", oidcProvider, "kube-apiserver", "kube-controller-manager", "mailpit"}

func init() {
	// Pdeathsig fires when the OS thread that forked a child exits, not when the
	// process does. Locking main to the main thread, from which every child is
	// started, makes the two the same event.
	runtime.LockOSThread()
}

func main() {
	os.Exit(run())
}

// logf reports progress on stderr, leaving stdout to the command and --print-env.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "launcher: "+format+"\n", args...)
}

type options struct {
	binDir   string
	workDir  string
	printEnv bool
	command  []string
}

func parseArgs(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("launcher", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: launcher --bin-dir DIR --work-dir DIR [--print-env] [-- COMMAND ARGS...]")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.binDir, "bin-dir", "", "directory holding "+strings.Join(components, ", ")+" (printed by build.sh)")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for certificates, kubeconfig, env file, data and logs (created if missing)")
	fs.BoolVar(&o.printEnv, "print-env", false, "print the export lines on stdout even when running a command")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.binDir == "" || o.workDir == "" {
		fs.Usage()
		return o, errors.New("--bin-dir and --work-dir are required")
	}
	var err error
	if o.binDir, err = filepath.Abs(o.binDir); err != nil {
		return o, fmt.Errorf("resolving --bin-dir: %w", err)
	}
	// The work dir ends up in exported paths, which must not depend on the
	// command's working directory.
	if o.workDir, err = filepath.Abs(o.workDir); err != nil {
		return o, fmt.Errorf("resolving --work-dir: %w", err)
	}
	o.command = fs.Args()
	return o, nil
}

// run is main without os.Exit, so deferred cleanup always happens before exiting.
func run() int {
	opts, err := parseArgs(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		logf("%v", err)
		return 2
	}

	ctx := signalContext()
	sup := newSupervisor()
	defer sup.stopAll()

	began := time.Now()
	env, err := bringUp(ctx, sup, opts)
	if err != nil {
		return reportStartupFailure(err)
	}
	logf("control plane ready in %s", time.Since(began).Round(time.Millisecond))

	if len(opts.command) == 0 {
		printEnv(env)
		logf("these lines are also in %s; press Ctrl-C to stop", filepath.Join(opts.workDir, "env"))
		return sup.serve(ctx)
	}
	if opts.printEnv {
		printEnv(env)
	}
	return sup.runCommand(ctx, opts.command, env)
}

// printEnv writes the export lines to stdout, where a person can copy them or a script
// can capture them apart from the progress on stderr.
func printEnv(env []envVar) {
	for _, v := range env {
		fmt.Println(v.export())
	}
}

// interrupted is the cancellation cause recorded when a signal arrives.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// signalContext returns a context cancelled by the first SIGINT, SIGTERM or SIGHUP.
// Later signals are swallowed so that impatience cannot skip the cleanup, which is
// bounded by stopTimeout per component anyway.
func signalContext() context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		cancel(interrupted{(<-sigs).(syscall.Signal)})
	}()
	return ctx
}

// signalExitCode follows the shell convention of 128+N for death by signal N.
func signalExitCode(sig syscall.Signal) int { return 128 + int(sig) }

// startError is a startup failure attributable to a component whose log explains it.
type startError struct {
	name    string
	logPath string
	err     error
}

func (e *startError) Error() string { return e.name + ": " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

func reportStartupFailure(err error) int {
	var intr interrupted
	if errors.As(err, &intr) {
		logf("%v during startup; stopping", intr)
		return signalExitCode(intr.sig)
	}
	var se *startError
	if errors.As(err, &se) {
		logf("FAILED to start %s: %v", se.name, se.err)
		if se.logPath != "" {
			logf("last %d lines of %s:\n%s", logTailLines, se.logPath, logTail(se.logPath, logTailLines))
		}
		return 1
	}
	logf("FAILED to start the control plane: %v", err)
	return 1
}

// plane holds everything the components' command lines are derived from.
type plane struct {
	binDir, workDir string
	pki             pkiPaths
	kubeconfig      string

	etcdPort, etcdPeerPort, apiPort, kcmPort, smtpPort, mailpitHTTPPort, oidcPort int
	// oidc is the identity provider's configuration (issuer, clients, users).
	oidc *oidcSetup
}

func (p plane) path(name string) string { return filepath.Join(p.workDir, name) }
func (p plane) bin(name string) string  { return filepath.Join(p.binDir, name) }

// bringUp prepares the work dir, starts every component in order and waits for each
// to become ready, returning the variables that point tests at them.
func bringUp(ctx context.Context, sup *supervisor, opts options) ([]envVar, error) {
	if err := checkBinaries(opts.binDir); err != nil {
		return nil, err
	}
	if err := resetWorkDir(opts.workDir); err != nil {
		return nil, err
	}
	logf("work dir %s, binaries from %s", opts.workDir, opts.binDir)

	p := plane{binDir: opts.binDir, workDir: opts.workDir, kubeconfig: filepath.Join(opts.workDir, "kubeconfig")}
	creds, err := writePKI(p.path("pki"))
	if err != nil {
		return nil, err
	}
	p.pki = creds.paths
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	p.etcdPort, p.etcdPeerPort, p.apiPort, p.kcmPort, p.smtpPort, p.mailpitHTTPPort, p.oidcPort =
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	if p.oidc, err = writeOIDCSetup(p, creds); err != nil {
		return nil, err
	}

	// kube-controller-manager reads the kubeconfig, so it must exist before it starts.
	if err := writeKubeconfig(p.kubeconfig, p.apiPort, creds); err != nil {
		return nil, err
	}
	specs, err := componentSpecs(p, creds)
	if err != nil {
		return nil, err
	}
	for _, c := range specs {
		if err := sup.launch(ctx, c); err != nil {
			return nil, err
		}
	}

	env := []envVar{
		{"KUBECONFIG", p.kubeconfig},
		{"KUBE_ORG_MAILPIT_SMTP", fmt.Sprintf("127.0.0.1:%d", p.smtpPort)},
		{"KUBE_ORG_MAILPIT_API", fmt.Sprintf("http://127.0.0.1:%d", p.mailpitHTTPPort)},
		{"KUBE_ORG_MAILPIT_BIN", p.bin("mailpit")},
		{"KUBE_ORG_CONTROLPLANE_DIR", p.workDir},
	}
	env = append(env, p.oidc.env()...)
	if err := writeEnvFile(p.path("env"), env); err != nil {
		return nil, err
	}
	return env, nil
}

// checkBinaries fails early, naming every missing binary, rather than after etcd has
// already been started.
func checkBinaries(binDir string) error {
	var missing []string
	for _, name := range components {
		info, err := os.Stat(filepath.Join(binDir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no executable %s in %s (run tests/controlplane/build.sh)", strings.Join(missing, ", "), binDir)
	}
	return nil
}

// resetWorkDir creates the work dir and discards data a previous run left in it, so
// every run starts from an empty cluster and mailbox. Only paths the launcher itself
// creates are removed.
func resetWorkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	for _, name := range []string{"etcd", "mailpit.db", "mailpit.db-wal", "mailpit.db-shm"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("removing stale %s: %w", name, err)
		}
	}
	return nil
}

// freePorts asks the kernel for n distinct unused loopback ports. Every listener stays
// open until all are chosen so the ports differ from each other; another process could
// still grab one before its component binds it, which is rare enough for tests.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// component is one process to start and the check that says it is ready.
type component struct {
	name    string
	bin     string
	logPath string
	args    []string
	probe   probeFunc
}

// componentSpecs returns the command lines and readiness probes, in start order.
func componentSpecs(p plane, creds *credentials) ([]component, error) {
	adminTLS, err := creds.adminTLSConfig()
	if err != nil {
		return nil, err
	}
	plain := newHTTPClient(nil)
	// The controller manager serves a self-signed certificate generated in memory;
	// only its health matters here, not its identity.
	insecure := newHTTPClient(&tls.Config{InsecureSkipVerify: true})
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPeerPort)
	spec := func(name string, probe probeFunc, args ...string) component {
		return component{name: name, bin: p.bin(name), logPath: p.path(name + ".log"), args: args, probe: probe}
	}

	oidcTLS, err := creds.caTLSConfig()
	if err != nil {
		return nil, err
	}

	return []component{
		spec("etcd", httpProbe(plain, etcdURL+"/health"),
			"--name=default",
			"--data-dir="+p.path("etcd"),
			"--listen-client-urls="+etcdURL,
			"--advertise-client-urls="+etcdURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=default="+peerURL,
			// Test data is disposable; skipping fsync saves a lot of time on slow disks.
			"--unsafe-no-fsync",
		),
		spec(oidcProvider, discoveryProbe(newHTTPClient(oidcTLS), p.oidc.issuer),
			"--listen="+fmt.Sprintf("127.0.0.1:%d", p.oidcPort),
			"--issuer="+p.oidc.issuer,
			"--tls-cert="+p.pki.oidcCert,
			"--tls-key="+p.pki.oidcKey,
			"--config="+p.oidc.providerConfig,
		),
		spec("kube-apiserver", httpProbe(newHTTPClient(adminTLS), fmt.Sprintf("https://127.0.0.1:%d/readyz", p.apiPort)),
			"--etcd-servers="+etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", p.apiPort),
			"--tls-cert-file="+p.pki.servingCert,
			"--tls-private-key-file="+p.pki.servingKey,
			"--client-ca-file="+p.pki.caCert,
			"--service-account-issuer="+serviceAccountIssuer,
			"--service-account-key-file="+p.pki.saPub,
			"--service-account-signing-key-file="+p.pki.saKey,
			"--service-cluster-ip-range="+serviceClusterRange,
			// RBAC is what kube-org drives, so it must be enforced as in a real cluster.
			"--authorization-mode=RBAC",
			// People sign in at the OpenID Connect provider above: a structured
			// authentication configuration (oidc.go) maps its ID tokens to users. It
			// replaces only the --oidc-* flags; client certificates, service-account
			// tokens, impersonation and --anonymous-auth (not set: the default) work as
			// before.
			"--authentication-config="+p.oidc.authenticationConfig,
			"--cert-dir="+p.path("apiserver"),
			// A single test client needs no fairness, and it costs CPU on two cores.
			"--enable-priority-and-fairness=false",
			// The default reconciler publishes the advertise address as the endpoint of
			// the "kubernetes" Service, which validation rejects for loopback addresses
			// (an error logged every 10s). Nothing in-cluster needs that endpoint.
			"--endpoint-reconciler-type=none",
		),
		spec("kube-controller-manager", httpProbe(insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", p.kcmPort)),
			"--kubeconfig="+p.kubeconfig,
			"--authentication-kubeconfig="+p.kubeconfig,
			"--authorization-kubeconfig="+p.kubeconfig,
			// Without a front proxy the apiserver publishes no request-header CA, and
			// looking it up would log an error on every retry. Only /healthz is
			// ever requested, and it needs no client authentication.
			"--authentication-skip-lookup",
			"--controllers="+controllers,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", p.kcmPort),
			"--use-service-account-credentials=false",
			"--service-account-private-key-file="+p.pki.saKey,
			"--root-ca-file="+p.pki.caCert,
		),
		spec("mailpit", httpProbe(plain, fmt.Sprintf("http://127.0.0.1:%d/api/v1/messages", p.mailpitHTTPPort)),
			fmt.Sprintf("--smtp=127.0.0.1:%d", p.smtpPort),
			fmt.Sprintf("--listen=127.0.0.1:%d", p.mailpitHTTPPort),
			"--database="+p.path("mailpit.db"),
			"--smtp-auth-accept-any",
			"--smtp-auth-allow-insecure",
			// Reverse DNS of 127.0.0.1 can stall in sandboxes without a resolver.
			"--smtp-disable-rdns",
			"--disable-version-check",
			"--quiet",
		),
	}, nil
}

// probeFunc returns nil once a component is ready and otherwise says why it is not.
type probeFunc func(ctx context.Context) error

// newHTTPClient returns a client that does not keep idle connections, so probes leave
// nothing open behind them. A nil tlsConfig means plain HTTP.
func newHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Timeout:   probeTimeout,
		Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true},
	}
}

// httpProbe is ready when GET url answers 200.
func httpProbe(client *http.Client, url string) probeFunc {
	return func(ctx context.Context) error {
		_, err := getOK(ctx, client, url, 16<<10)
		return err
	}
}

// getOK GETs url and returns up to limit bytes of the body when the answer is 200; any
// other answer is an error naming the checks still failing.
func getOK(ctx context.Context, client *http.Client, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %s", url, resp.Status, failedChecks(string(body)))
	}
	return body, nil
}

// failedChecks keeps only the "[-]" lines of a Kubernetes health report, which name
// the checks that are still failing; other bodies are returned trimmed.
func failedChecks(body string) string {
	var failed []string
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "[-]") {
			failed = append(failed, strings.TrimSpace(line))
		}
	}
	if len(failed) > 0 {
		return strings.Join(failed, "; ")
	}
	body = strings.TrimSpace(body)
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return body
}

// process is one started component.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // how it exited; valid once done is closed
}

// supervisor owns the component processes and guarantees none outlives the launcher.
type supervisor struct {
	procs    []*process
	stopping atomic.Bool
	// died receives each process that exits before stopAll began.
	died chan *process
}

func newSupervisor() *supervisor {
	return &supervisor{died: make(chan *process, len(components))}
}

// launch starts c and waits until its probe passes, logging how long that took.
func (s *supervisor) launch(ctx context.Context, c component) error {
	began := time.Now()
	p, err := s.start(c)
	if err != nil {
		return &startError{name: c.name, err: err}
	}
	if err := s.waitReady(ctx, p, c.probe); err != nil {
		return err
	}
	logf("%s ready in %s (log: %s)", c.name, time.Since(began).Round(time.Millisecond), p.logPath)
	return nil
}

// start runs a component with its output in its log file. Each component leads its own
// process group, so a terminal's Ctrl-C reaches only the launcher (and the command),
// which then stops components in order; Pdeathsig kills them if the launcher dies.
func (s *supervisor) start(c component) (*process, error) {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	// The child keeps its own descriptor; ours is not needed once it has started.
	defer logFile.Close()

	cmd := exec.Command(c.bin, c.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.bin, err)
	}
	p := &process{name: c.name, logPath: c.logPath, cmd: cmd, done: make(chan struct{})}
	s.procs = append(s.procs, p)
	go s.reap(p)
	return p, nil
}

// reap waits for p to exit and, unless the launcher is stopping everything, reports
// it on died so whoever is waiting can say loudly which component is gone.
func (s *supervisor) reap(p *process) {
	p.waitErr = p.cmd.Wait()
	close(p.done)
	if s.stopping.Load() {
		return
	}
	select {
	case s.died <- p:
	default:
	}
}

// waitReady polls probe until it passes, failing early if any component exits (a dead
// etcd must not look like a slow kube-apiserver) or the launcher is interrupted.
func (s *supervisor) waitReady(ctx context.Context, p *process, probe probeFunc) error {
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := probe(probeCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case d := <-s.died:
			what := "exited before becoming ready"
			if d != p {
				what = "exited while waiting for " + p.name + " to become ready"
			}
			return &startError{name: d.name, logPath: d.logPath, err: fmt.Errorf("%s: %s", what, describeExit(d.waitErr))}
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return &startError{name: p.name, logPath: p.logPath,
				err: fmt.Errorf("not ready after %s: %w", readyTimeout, err)}
		case <-tick.C:
		}
	}
}

// serve keeps the control plane up for a person until a signal arrives. A component
// dying ends it with a failure, so a script waiting on the launcher notices.
func (s *supervisor) serve(ctx context.Context) int {
	select {
	case <-ctx.Done():
		logf("%v; stopping", context.Cause(ctx))
		return 0
	case p := <-s.died:
		reportDeath(p)
		return 1
	}
}

// runCommand runs argv with env added to the launcher's environment and returns its
// exit code. The command stays in the launcher's process group so it keeps the
// terminal; a signal sent to the launcher alone is forwarded to it.
func (s *supervisor) runCommand(ctx context.Context, argv []string, env []envVar) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	for _, v := range env {
		cmd.Env = append(cmd.Env, v.name+"="+v.value) // later entries win over inherited ones
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf("running %s", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		logf("cannot run %s: %v", argv[0], err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	interrupt := ctx.Done()
	var kill <-chan time.Time
	for {
		select {
		case err := <-done:
			code := exitCode(err)
			logf("%s exited with code %d", argv[0], code)
			return code
		case p := <-s.died:
			reportDeath(p)
		case <-interrupt:
			interrupt = nil
			var intr interrupted
			if errors.As(context.Cause(ctx), &intr) {
				logf("%v; forwarding it to %s", intr, argv[0])
				_ = cmd.Process.Signal(intr.sig)
			}
			kill = time.After(stopTimeout)
		case <-kill:
			logf("%s still running %s after the signal; killing it", argv[0], stopTimeout)
			_ = cmd.Process.Kill()
		}
	}
}

// reportDeath makes an unexpected exit impossible to miss among test output.
func reportDeath(p *process) {
	logf("!!! %s DIED UNEXPECTEDLY (%s); the control plane is broken. Last %d lines of %s:\n%s",
		p.name, describeExit(p.waitErr), logTailLines, p.logPath, logTail(p.logPath, logTailLines))
}

// exitCode maps a command's Wait error to a shell-style exit code.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 1
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return signalExitCode(ws.Signal())
	}
	return ee.ExitCode()
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stopAll stops components in reverse start order, so nothing loses a dependency
// while it is still running.
func (s *supervisor) stopAll() {
	s.stopping.Store(true)
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].stop()
	}
	s.procs = nil
}

// stop sends SIGTERM to p's process group, and SIGKILL if it is not gone in time.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	began := time.Now()
	p.signalGroup(syscall.SIGTERM)
	select {
	case <-p.done:
		logf("stopped %s in %s", p.name, time.Since(began).Round(time.Millisecond))
	case <-time.After(stopTimeout):
		logf("%s ignored SIGTERM for %s; killing it", p.name, stopTimeout)
		p.signalGroup(syscall.SIGKILL)
		<-p.done
	}
}

// signalGroup signals p's whole process group (its pid, thanks to Setpgid), which
// also reaches anything the component may have spawned.
func (p *process) signalGroup(sig syscall.Signal) {
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		logf("sending %v to %s: %v", sig, p.name, err)
	}
}

// logTail returns the last n lines of the file at path. It reads at most the final
// 64 KiB, because kube-apiserver logs grow large.
func logTail(path string, n int) string {
	const window = 64 << 10
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	offset := max(0, info.Size()-window)
	buf := make([]byte, info.Size()-offset)
	if _, err := f.ReadAt(buf, offset); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if offset > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line was cut by the window
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pkiPaths are the files the components read their keys and certificates from.
type pkiPaths struct {
	caCert, servingCert, servingKey, adminCert, adminKey, saKey, saPub, oidcCert, oidcKey string
}

// credentials is the generated PKI: paths for the components, PEM for the kubeconfig.
type credentials struct {
	paths                            pkiPaths
	caPEM, adminCertPEM, adminKeyPEM []byte
}

// adminTLSConfig is what a client presenting the admin certificate would use; the
// launcher probes /readyz with it exactly as the tests will connect.
func (c *credentials) adminTLSConfig() (*tls.Config, error) {
	pair, err := tls.X509KeyPair(c.adminCertPEM, c.adminKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading admin key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.caPEM) {
		return nil, errors.New("loading CA certificate: no PEM certificate found")
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, nil
}

// caTLSConfig trusts the generated CA and presents no client certificate.
func (c *credentials) caTLSConfig() (*tls.Config, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.caPEM) {
		return nil, errors.New("loading CA certificate: no PEM certificate found")
	}
	return &tls.Config{RootCAs: roots}, nil
}

// keyPair is a certificate with its private key.
type keyPair struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// writePKI generates a fresh CA, the kube-apiserver serving certificate, the admin
// client certificate (system:masters, so RBAC never gets in the test's way), the
// service-account signing key and the OpenID Connect provider's serving certificate,
// and writes them under dir.
func writePKI(dir string) (*credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pki dir: %w", err)
	}
	ca, err := newKeyPair(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "kube-org-test-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("generating CA: %w", err)
	}
	serving, err := newKeyPair(&x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	if err != nil {
		return nil, fmt.Errorf("generating kube-apiserver serving certificate: %w", err)
	}
	admin, err := newKeyPair(&x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUser, Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
	if err != nil {
		return nil, fmt.Errorf("generating admin client certificate: %w", err)
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return nil, err
	}
	oidcServing, err := newKeyPair(&x509.Certificate{
		Subject:     pkix.Name{CommonName: oidcProvider},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	if err != nil {
		return nil, fmt.Errorf("generating the OpenID Connect provider's serving certificate: %w", err)
	}

	paths := pkiPaths{
		caCert:      filepath.Join(dir, "ca.crt"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
		adminCert:   filepath.Join(dir, "admin.crt"),
		adminKey:    filepath.Join(dir, "admin.key"),
		saKey:       filepath.Join(dir, "service-account.key"),
		saPub:       filepath.Join(dir, "service-account.pub"),
		oidcCert:    filepath.Join(dir, "oidc-provider.crt"),
		oidcKey:     filepath.Join(dir, "oidc-provider.key"),
	}
	files := []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{paths.caCert, ca.certPEM, 0o644},
		{paths.servingCert, serving.certPEM, 0o644},
		{paths.servingKey, serving.keyPEM, 0o600},
		{paths.adminCert, admin.certPEM, 0o644},
		{paths.adminKey, admin.keyPEM, 0o600},
		{paths.saKey, saKey, 0o600},
		{paths.saPub, saPub, 0o644},
		{paths.oidcCert, oidcServing.certPEM, 0o644},
		{paths.oidcKey, oidcServing.keyPEM, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, f.perm); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	return &credentials{paths: paths, caPEM: ca.certPEM, adminCertPEM: admin.certPEM, adminKeyPEM: admin.keyPEM}, nil
}

// newKeyPair creates an ECDSA P-256 key and a certificate for it from tmpl, signed by
// issuer, or self-signed when issuer is nil. Validity starts an hour back to tolerate
// clock skew and lasts a year, far beyond any test run.
func newKeyPair(tmpl *x509.Certificate, issuer *keyPair) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(365 * 24 * time.Hour)

	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing generated certificate: %w", err)
	}
	keyPEM, err := privateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der), keyPEM: keyPEM}, nil
}

// newServiceAccountKey returns the PEM private and public halves of the key
// kube-apiserver signs service-account tokens with (and verifies them against).
func newServiceAccountKey() (private, public []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating service-account key: %w", err)
	}
	private, err = privateKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding service-account public key: %w", err)
	}
	return private, pemBlock("PUBLIC KEY", der), nil
}

func privateKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// kubeconfigTemplate embeds all credentials, so the file works from any directory
// and survives the pki dir being inspected or copied elsewhere.
const kubeconfigTemplate = `apiVersion: v1
kind: Config
clusters:
- name: kube-org-test
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kube-org-test
  context:
    cluster: kube-org-test
    user: %s
current-context: kube-org-test
`

func writeKubeconfig(path string, apiPort int, creds *credentials) error {
	b64 := base64.StdEncoding.EncodeToString
	data := fmt.Sprintf(kubeconfigTemplate, apiPort, b64(creds.caPEM), adminUser,
		b64(creds.adminCertPEM), b64(creds.adminKeyPEM), adminUser)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// envVar is one variable handed to tests.
type envVar struct{ name, value string }

// export renders v as a line a POSIX shell can source.
func (v envVar) export() string { return "export " + v.name + "=" + shellQuote(v.value) }

// shellQuote leaves plain paths and addresses readable and single-quotes the rest.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:+,=@%", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeEnvFile(path string, env []envVar) error {
	var b strings.Builder
	for _, v := range env {
		b.WriteString(v.export() + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing env file: %w", err)
	}
	return nil
}
