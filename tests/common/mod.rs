//! Shared integration-test harness.
//!
//! Tests talk to whatever cluster `KUBECONFIG` names: the local control plane that
//! `make test` starts, or a kind cluster on a laptop. When no API server answers, every
//! test fails loudly; nothing is skipped.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod oidc;
pub mod org;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use tokio::sync::OnceCell;

/// A client for the cluster under test, with kube-org's CRDs installed and Established
/// and the operator's ServiceAccount and RBAC from `manifests/` in place.
pub async fn client() -> Client {
    static CRDS: OnceCell<()> = OnceCell::const_new();
    let client = connect().await;
    CRDS.get_or_init(|| async {
        install_crds(client.clone()).await;
        install_operator_rbac(&client).await;
    })
    .await;
    client
}

/// The operators the tests start act as this ServiceAccount (`--impersonate`), with
/// exactly the permissions `manifests/rbac.yaml` grants: a missing permission fails a
/// test.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "kube-org-system/kube-org";
/// The user name the API server sees for [`OPERATOR_SERVICE_ACCOUNT`].
pub const OPERATOR_USER: &str = "system:serviceaccount:kube-org-system:kube-org";

/// Applies `manifests/namespace.yaml`, `manifests/rbac.yaml` and
/// `manifests/admission-policy.yaml`, then waits until the aggregated ClusterRole lets
/// the operator's ServiceAccount do its work and the admission policy is in force.
async fn install_operator_rbac(client: &Client) {
    let yaml = [
        include_str!("../../manifests/namespace.yaml"),
        include_str!("../../manifests/rbac.yaml"),
        include_str!("../../manifests/admission-policy.yaml"),
    ]
    .join("\n---\n");
    for object in parse_yaml(&yaml) {
        let name = object.metadata.name.clone().unwrap_or_default();
        apply(client, &object, Mode::Apply)
            .await
            .unwrap_or_else(|error| panic!("installing {name} from manifests/: {error}"));
    }
    // kube-controller-manager fills the aggregated ClusterRole.
    eventually(
        "the operator's aggregated ClusterRole is filled",
        Duration::from_secs(30),
        || async {
            let bind_view = Can {
                verb: "bind",
                group: "rbac.authorization.k8s.io",
                resource: "clusterroles",
                namespace: None,
                name: Some("view"),
            };
            can(client, OPERATOR_USER, bind_view).await.then_some(())
        },
    )
    .await;
    // The API server compiles a new admission policy in the background.
    let operator = client_as(
        OPERATOR_USER,
        &["system:serviceaccounts", "system:authenticated"],
    )
    .await;
    eventually(
        "the operator's admission policy is in force",
        Duration::from_secs(30),
        || async {
            operator_may_not_delete_cluster_admin(&operator)
                .await
                .then_some(())
        },
    )
    .await;
}

/// Whether the API server refuses the operator's ServiceAccount deleting the
/// `cluster-admin` ClusterRole (asked as a dry run: nothing is deleted either way).
pub async fn operator_may_not_delete_cluster_admin(operator: &Client) -> bool {
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(operator.clone());
    let dry_run = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    match roles.delete("cluster-admin", &dry_run).await {
        Err(kube::Error::Api(status)) => {
            status.code == 403 && status.message.contains("kube-org may only write")
        }
        _ => false,
    }
}

/// A client acting as `user` (with `groups`) through impersonation: tests act as the
/// tenant they are about, against the real API server.
pub async fn client_as(user: &str, groups: &[&str]) -> Client {
    let mut config = kube::Config::infer().await.expect("a client configuration");
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(config).expect("a client")
}

/// Connects to the cluster `KUBECONFIG` names and proves the API server answers.
pub async fn connect() -> Client {
    let client = Client::try_default().await.unwrap_or_else(|error| {
        panic!("no Kubernetes API server to test against ({error}). Run the tests with `make test`, which starts a local control plane, or point KUBECONFIG at a cluster.")
    });
    let version = tokio::time::timeout(Duration::from_secs(20), client.apiserver_version())
        .await
        .unwrap_or_else(|_| panic!("the Kubernetes API server did not answer within 20s"))
        .unwrap_or_else(|error| panic!("the Kubernetes API server did not answer: {error}"));
    assert!(!version.git_version.is_empty());
    client
}

/// Applies the CRDs `kube-org crds` generates (waiting until each is Established) and
/// the ClusterRoles kube-org binds (`manifests/access-clusterroles.yaml`).
async fn install_crds(client: Client) {
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let yaml = include_str!("../../manifests/access-clusterroles.yaml");
    for object in parse_yaml(yaml) {
        let role: k8s_openapi::api::rbac::v1::ClusterRole =
            serde_json::from_value(serde_json::to_value(&object).expect("object"))
                .expect("a ClusterRole");
        let name = role.metadata.name.clone().expect("named");
        roles
            .patch(
                &name,
                &PatchParams::apply("kube-org-tests").force(),
                &Patch::Apply(&role),
            )
            .await
            .unwrap_or_else(|error| panic!("installing ClusterRole {name}: {error}"));
    }
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in crds_under_test() {
        let name = crd.metadata.name.clone().expect("generated CRDs are named");
        api.patch(
            &name,
            &PatchParams::apply("kube-org-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|error| panic!("installing CRD {name}: {error}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 30s"))
        .unwrap_or_else(|error| panic!("waiting for CRD {name}: {error}"));
    }
}

/// The CRDs of the operator under test: this tree's, or those the binary `KUBE_ORG_BIN`
/// prints (the access benchmark measuring another commit's operator: its statuses must
/// be written against its own schema).
fn crds_under_test() -> Vec<CustomResourceDefinition> {
    let Some(binary) = std::env::var_os("KUBE_ORG_BIN") else {
        return kube_org::crdgen::all();
    };
    let printed = std::process::Command::new(&binary)
        .arg("crds")
        .output()
        .unwrap_or_else(|error| panic!("running {} crds: {error}", binary.display()));
    assert!(printed.status.success(), "{} crds failed", binary.display());
    let yaml = String::from_utf8(printed.stdout).expect("CRDs in UTF-8");
    parse_yaml(&yaml)
        .into_iter()
        .map(|object| {
            serde_json::from_value(serde_json::to_value(&object).expect("object"))
                .expect("a CustomResourceDefinition")
        })
        .collect()
}

/// A name no other test (or earlier run) uses: `<prefix>-<pid>-<counter>-<random>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        nanos % 0xfff
    )
}

/// The objects of one test that starts operators of its own: those operators select
/// only Organizations and Invitations carrying this shard's label, and other operators
/// of the same test binary (other shards, or none) leave them alone. So such tests run
/// in parallel without acting on each other's objects.
pub struct Shard {
    pub value: String,
}

impl Shard {
    pub const LABEL: &'static str = "kube-org.io/test-shard";

    pub fn new(prefix: &str) -> Shard {
        Shard {
            value: unique(prefix),
        }
    }

    /// Flags making an operator handle only this shard.
    pub fn operator_args(&self) -> Vec<String> {
        let selector = format!("{}={}", Self::LABEL, self.value);
        vec![
            "--organizations-selector".to_string(),
            selector.clone(),
            "--invitations-selector".to_string(),
            selector,
        ]
    }

    /// The labels putting an object into this shard.
    pub fn labels(&self) -> serde_json::Value {
        serde_json::json!({ Self::LABEL: self.value })
    }
}

/// Creates the Organization `name` owned by alice@example.com, with `labels` and extra
/// `spec` fields, without starting any operator; returns its home namespace.
pub async fn create_organization(
    client: &Client,
    name: &str,
    labels: serde_json::Value,
    spec: serde_json::Value,
) -> String {
    let mut full = serde_json::json!({"owners": ["alice@example.com"]});
    for (key, value) in spec.as_object().expect("spec fields") {
        full[key] = value.clone();
    }
    let org: kube_org::api::Organization = serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": name, "labels": labels}, "spec": full,
    }))
    .expect("an Organization");
    Api::<kube_org::api::Organization>::all(client.clone())
        .create(&PostParams::default(), &org)
        .await
        .unwrap_or_else(|error| panic!("creating Organization {name}: {error}"));
    format!("org-{name}")
}

/// Waits until the namespace exists (an operator created a home namespace).
pub async fn wait_for_namespace(client: &Client, name: &str, within: Duration) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(&format!("namespace {name}"), within, || async {
        namespaces.get_opt(name).await.ok().flatten()
    })
    .await;
}

/// Creates a namespace with a unique name and returns it.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    create_namespace(client, &name).await;
    name
}

/// Creates a namespace if it does not exist; returns whether it was created.
pub async fn create_namespace(client: &Client, name: &str) -> bool {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("namespace literal");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 409 => false,
        Err(error) => panic!("creating namespace {name}: {error}"),
    }
}

/// Deletes a namespace (the namespace controller finishes the job).
pub async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

/// Parses a multi-document YAML stream into objects, skipping empty documents.
pub fn parse_yaml(yaml: &str) -> Vec<DynamicObject> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|document| {
            let value = serde_yaml::Value::deserialize(document).expect("valid YAML");
            (!value.is_null()).then(|| serde_yaml::from_value(value).expect("a Kubernetes object"))
        })
        .collect()
}

/// How an object is sent to the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Persist it.
    Apply,
    /// Full admission (schema, CEL) without persisting.
    DryRun,
}

/// Server-side applies one object of any kind the cluster serves.
pub async fn apply(
    client: &Client,
    object: &DynamicObject,
    mode: Mode,
) -> Result<DynamicObject, kube::Error> {
    let types = object
        .types
        .as_ref()
        .expect("objects carry apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("a valid apiVersion");
    let discovery = Discovery::new(client.clone())
        .filter(&[gvk.group.as_str()])
        .run()
        .await
        .expect("API discovery");
    let (resource, capabilities) = discovery
        .resolve_gvk(&gvk)
        .unwrap_or_else(|| panic!("the cluster does not serve {gvk:?}"));
    let name = object.metadata.name.clone().expect("objects are named");
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            &resource,
        ),
    };
    let mut params = PatchParams::apply("kube-org-tests").force();
    params.dry_run = mode == Mode::DryRun;
    api.patch(&name, &params, &Patch::Apply(object)).await
}

/// The message of an API error, for asserting on what a person reads.
pub fn error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// A `kube-org run` process started by the tests, against the cluster under test.
pub struct Operator {
    /// Where its public accept endpoint listens (`--listen`), e.g.
    /// `http://127.0.0.1:41234`.
    pub base_url: String,
    /// Where `/metrics`, `/healthz` and `/readyz` listen (`--metrics-listen`).
    pub metrics_url: String,
    /// Its log file.
    pub log: std::path::PathBuf,
    child: std::process::Child,
    /// Closing this stops the operator (it runs with `--stop-on-stdin-close`), so the
    /// operator never outlives the test process, however that ends.
    stdin: Option<std::process::ChildStdin>,
}

impl Operator {
    /// Starts `kube-org run` with extra flags and waits until `/readyz` answers.
    pub async fn start(extra_args: &[String]) -> Operator {
        let mut operator = Operator::spawn(extra_args);
        operator.wait_ready().await;
        operator
    }

    /// Starts `kube-org run` with extra flags, without waiting for it.
    pub fn spawn(extra_args: &[String]) -> Operator {
        Operator::spawn_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_kube-org")),
            extra_args,
        )
    }

    /// Starts `binary run` (a `kube-org` built elsewhere, e.g. from another revision,
    /// as the benchmarks compare) and waits until `/readyz` answers.
    pub async fn start_bin(binary: &std::path::Path, extra_args: &[String]) -> Operator {
        let mut operator = Operator::spawn_bin(binary, extra_args);
        operator.wait_ready().await;
        operator
    }

    /// Starts `kube-org run` with extra flags made from its accept endpoint's base URL
    /// (e.g. a redirect URL under it) and waits until `/readyz` answers.
    pub async fn start_with(extra_args: impl FnOnce(&str) -> Vec<String>) -> Operator {
        let port = free_port();
        let base_url = format!("http://127.0.0.1:{port}");
        let args = extra_args(&base_url);
        let mut operator = Operator::spawn_at(
            std::path::Path::new(env!("CARGO_BIN_EXE_kube-org")),
            port,
            OPERATOR_SERVICE_ACCOUNT,
            &args,
        );
        operator.wait_ready().await;
        operator
    }

    /// Starts `binary run` with extra flags, without waiting for it.
    pub fn spawn_bin(binary: &std::path::Path, extra_args: &[String]) -> Operator {
        Operator::spawn_at(binary, free_port(), OPERATOR_SERVICE_ACCOUNT, extra_args)
    }

    /// Starts `kube-org run` acting as another ServiceAccount (`namespace/name`, with
    /// whatever permissions the test gave it), without waiting for it.
    pub fn spawn_as(service_account: &str, extra_args: &[String]) -> Operator {
        Operator::spawn_at(
            std::path::Path::new(env!("CARGO_BIN_EXE_kube-org")),
            free_port(),
            service_account,
            extra_args,
        )
    }

    fn spawn_at(
        binary: &std::path::Path,
        port: u16,
        service_account: &str,
        extra_args: &[String],
    ) -> Operator {
        let base_url = format!("http://127.0.0.1:{port}");
        let mut metrics_port = free_port();
        while metrics_port == port {
            metrics_port = free_port();
        }
        let metrics_url = format!("http://127.0.0.1:{metrics_port}");
        let dir = std::env::var_os("KUBE_ORG_CONTROLPLANE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let log = dir.join(format!("operator-{}.log", unique("run")));
        let log_file = std::fs::File::create(&log).expect("operator log file");
        let mut child = std::process::Command::new(binary)
            .arg("run")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--stop-on-stdin-close")
            .arg("--impersonate")
            .arg(service_account)
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn,kube_org=info".into()),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(log_file.try_clone().expect("log file handle"))
            .stderr(log_file)
            .spawn()
            .expect("starting kube-org run");
        let stdin = child.stdin.take();
        Operator {
            base_url,
            metrics_url,
            log,
            child,
            stdin,
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kube-org run exited with {status}; log:\n{}",
                    self.log_tail()
                );
            }
            if http_get_status(&format!("{}/readyz", self.metrics_url)).await == Some(200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kube-org run not ready within 30s; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The operator's process id (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` answers (after [`Operator::spawn`]).
    pub async fn ready(&mut self) {
        self.wait_ready().await
    }

    /// The last lines of the operator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Stops it the way Kubernetes does (standard input closing stands in for SIGTERM)
    /// and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.stdin.take();
        self.child.wait().expect("waiting for kube-org run")
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("checking on kube-org run")
    }

    /// Sends SIGTERM, as Kubernetes does when it stops a Pod, and waits for it to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("waiting for kube-org run")
    }

    /// Kills it without warning (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator shared by every test of one test binary, started on first use, after
/// the CRDs are installed (its watches would otherwise start in back-off). It sends
/// invitation emails through the Mailpit `make test` starts.
pub async fn operator() -> &'static Operator {
    static OPERATOR: OnceCell<Operator> = OnceCell::const_new();
    OPERATOR
        .get_or_init(|| async {
            client().await;
            Operator::start(&shared_mail_args()).await
        })
        .await
}

/// Flags that send invitation emails through the Mailpit the launcher started; none
/// without one (against kind, invitations then wait with `Delivered=False`).
pub fn shared_mail_args() -> Vec<String> {
    match std::env::var("KUBE_ORG_MAILPIT_SMTP") {
        Ok(smtp) => vec![
            "--smtp-url".to_string(),
            format!("smtp://{smtp}"),
            "--smtp-from".to_string(),
            "kube-org@example.com".to_string(),
        ],
        Err(_) => Vec::new(),
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// The status code of a plain HTTP GET, or `None` when nothing answers.
pub async fn http_get_status(url: &str) -> Option<u16> {
    http_get(url).await.map(|(status, _)| status)
}

/// A plain HTTP/1.1 GET: status code and body (no chunked encoding expected).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}

impl Operator {
    /// The value of one metric (the sum over its label sets) from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(&format!("{}/metrics", self.metrics_url))
            .await
            .expect("/metrics answers");
        body.lines()
            .filter(|line| line.split(['{', ' ']).next() == Some(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// API write requests the operator made so far.
    pub async fn writes(&self) -> u64 {
        self.metric("kube_org_api_writes_all_total").await as u64
    }

    /// The samples of metric `name` (e.g. `kube_org_api_writes_total`), by the values of
    /// `labels` joined with a dot.
    pub async fn labelled_metric(
        &self,
        name: &str,
        labels: &[&str],
    ) -> std::collections::BTreeMap<String, u64> {
        let (_, body) = http_get(&format!("{}/metrics", self.metrics_url))
            .await
            .expect("/metrics answers");
        let mut samples = std::collections::BTreeMap::new();
        for line in body.lines() {
            let Some(rest) = line.strip_prefix(&format!("{name}{{")) else {
                continue;
            };
            let Some((set, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |label: &str| {
                set.split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{label}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let value: f64 = value.trim().parse().unwrap_or_default();
            let key: Vec<String> = labels.iter().map(|l| label(l)).collect();
            samples.insert(key.join("."), value as u64);
        }
        samples
    }

    /// The operator's write requests so far by "<resource>.<verb>"
    /// (`kube_org_api_writes_total`).
    pub async fn writes_by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        self.labelled_metric("kube_org_api_writes_total", &["resource", "verb"])
            .await
    }

    /// Waits until the operator has made no write for `quiet`, and returns its writes.
    pub async fn settle(&self, quiet: Duration, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = self.writes().await;
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.writes().await;
            if now != last {
                (last, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= quiet {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator kept writing for {timeout:?} (a hot loop?); log:\n{}",
                self.log_tail()
            );
        }
    }
}

/// Polls `check` every 50ms until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (as [`eventually`]) for an Event in `namespace` with `reason` about the object
/// named `regarding` that satisfies `matches`, and returns it. An Event about a
/// cluster-scoped object (an Organization) is in `default`.
pub async fn eventually_event(
    client: &Client,
    namespace: &str,
    reason: &str,
    regarding: &str,
    timeout: Duration,
    matches: impl Fn(&k8s_openapi::api::events::v1::Event) -> bool,
) -> k8s_openapi::api::events::v1::Event {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), namespace);
    let what = format!("a {reason} Event about {regarding} in {namespace}");
    eventually(&what, timeout, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                && matches(e)
        })
    })
    .await
}

/// One question to the API server's authorizer, as `kubectl auth can-i --as`.
#[derive(Clone, Copy, Debug)]
pub struct Can<'a> {
    pub verb: &'a str,
    /// `""` for the core group.
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl<'a> Can<'a> {
    /// `verb` on `resource` (core or `resource.group` form) in `namespace`.
    pub fn new(verb: &'a str, resource: &'a str, namespace: Option<&'a str>) -> Self {
        let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
        Can {
            verb,
            group,
            resource,
            namespace,
            name: None,
        }
    }
}

/// Whether the cluster's authorizer allows `user` to do `what` (a SubjectAccessReview).
pub async fn can(client: &Client, user: &str, what: Can<'_>) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(what.verb.to_string()),
                group: Some(what.group.to_string()),
                resource: Some(what.resource.to_string()),
                namespace: what.namespace.map(str::to_string),
                name: what.name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// Waits until `user` may (or, with `allowed == false`, may not) do `what`.
pub async fn eventually_can(
    client: &Client,
    user: &str,
    what: Can<'_>,
    allowed: bool,
    timeout: Duration,
) {
    let description = format!(
        "{user} {} {what:?}",
        if allowed { "may" } else { "may not" }
    );
    eventually(&description, timeout, || async {
        (can(client, user, what).await == allowed).then_some(())
    })
    .await
}

/// A binary of the directory `tests/controlplane/build.sh` prints (helm, gitops-check):
/// `KUBE_ORG_TOOLS_DIR`, else the directory of the Mailpit the launcher names.
pub fn tool(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("KUBE_ORG_TOOLS_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("KUBE_ORG_MAILPIT_BIN")
                .and_then(|m| std::path::Path::new(&m).parent().map(|p| p.to_path_buf()))
        })
        .expect("set KUBE_ORG_TOOLS_DIR to the directory tests/controlplane/build.sh prints");
    dir.join(name)
}

/// Runs `command` with `stdin` as its standard input; its standard output, or a panic
/// with both outputs when it fails.
pub fn run_with_stdin(mut command: std::process::Command, stdin: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("stdin");
    drop(input);
    let output = child.wait_with_output().expect("output");
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}
