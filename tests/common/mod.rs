//! Shared integration-test harness.
//!
//! Tests talk to whatever cluster `KUBECONFIG` names: the local control plane that
//! `make test` starts, or a kind cluster on a laptop. When no API server answers, every
//! test fails loudly; nothing is skipped.

#![allow(dead_code)] // each test binary uses a different part of the harness

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

/// A client for the cluster under test, with kube-org's CRDs installed and Established.
pub async fn client() -> Client {
    static CRDS: OnceCell<()> = OnceCell::const_new();
    let client = connect().await;
    CRDS.get_or_init(|| install_crds(client.clone())).await;
    client
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

/// Applies the CRDs `kube-org crds` generates and waits until each is Established.
async fn install_crds(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in kube_org::crdgen::all() {
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
