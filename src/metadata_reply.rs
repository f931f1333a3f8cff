//! Writes that ask the API server to reply with the object's metadata only.
//!
//! The API server answers a create, replace or patch with the whole object, and kube
//! reads it into the object's type. kube-org never looks at that copy: its caches hear
//! of the change from their watches. At 10,000 members a Membership's status lists up
//! to 1,000 namespaces and a native RoleBinding names thousands of subjects, so each
//! reply was tens of kilobytes parsed into strings and thrown away, dozens of them at
//! a time. Asked for `PartialObjectMetadata` (the form kube uses for metadata-only
//! watches), the reply is a few hundred bytes whatever the object's size; the API
//! server's own work is the same.

use std::fmt::Debug;

use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_TYPE};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{PartialObjectMeta, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{Body, WireForm};

/// The `Accept` header of a metadata-only reply.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Creates `obj` (sent in its kind's [`WireForm`]).
pub async fn create<K>(api: &Api<K>, pp: &PostParams, obj: &K) -> kube::Result<PartialObjectMeta<K>>
where
    K: kube::Resource + WireForm + Clone + DeserializeOwned + Debug,
{
    let Body {
        bytes,
        content_type,
    } = obj.body().map_err(kube::Error::SerdeError)?;
    let request = Request::new(api.resource_url()).create(pp, bytes);
    let request = with_content_type(request.map_err(kube::Error::BuildRequest)?, content_type);
    send(api, request, "create").await
}

/// Replaces the object named `name` by `obj` (sent in its kind's [`WireForm`]).
pub async fn replace<K>(
    api: &Api<K>,
    name: &str,
    pp: &PostParams,
    obj: &K,
) -> kube::Result<PartialObjectMeta<K>>
where
    K: kube::Resource + WireForm + Clone + DeserializeOwned + Debug,
{
    let Body {
        bytes,
        content_type,
    } = obj.body().map_err(kube::Error::SerdeError)?;
    let request = Request::new(api.resource_url()).replace(name, pp, bytes);
    let request = with_content_type(request.map_err(kube::Error::BuildRequest)?, content_type);
    send(api, request, "replace").await
}

/// kube's request builder says JSON; the body may be protobuf.
fn with_content_type(
    mut request: http::Request<Vec<u8>>,
    content_type: &'static str,
) -> http::Request<Vec<u8>> {
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    request
}

/// Patches the status subresource of the object named `name`.
pub async fn patch_status<K, P>(
    api: &Api<K>,
    name: &str,
    pp: &PatchParams,
    patch: &Patch<P>,
) -> kube::Result<PartialObjectMeta<K>>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
    P: Serialize,
{
    let request = Request::new(api.resource_url()).patch_subresource("status", name, pp, patch);
    send(
        api,
        request.map_err(kube::Error::BuildRequest)?,
        "patch_status",
    )
    .await
}

async fn send<K>(
    api: &Api<K>,
    mut request: http::Request<Vec<u8>>,
    verb: &'static str,
) -> kube::Result<PartialObjectMeta<K>>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(METADATA_ONLY));
    request.extensions_mut().insert(verb);
    api.clone()
        .into_client()
        .request::<PartialObjectMeta<K>>(request)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef};
    use kube::api::ObjectMeta;

    use super::*;

    /// Method, path, `Accept` and `Content-Type` headers of one request.
    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    /// A client whose API server records each request and replies as a real one does
    /// to a metadata-only request.
    fn recording_client() -> (kube::Client, Seen) {
        let seen = Seen::default();
        let log = seen.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let header = |name| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            log.lock().unwrap().push((
                request.method().to_string(),
                request.uri().path().to_string(),
                header(ACCEPT),
                header(CONTENT_TYPE),
            ));
            let reply = r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"viewers","namespace":"team","resourceVersion":"7"}}"#;
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                http_body_util::Full::new(bytes::Bytes::from_static(reply.as_bytes())),
            )))
        });
        (kube::Client::new(service, "default"), seen)
    }

    fn binding() -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some("viewers".into()),
                namespace: Some("team".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "view".into(),
            },
            subjects: None,
        }
    }

    #[tokio::test]
    async fn every_write_asks_for_metadata_only_and_reads_it() {
        let (client, seen) = recording_client();
        let api: Api<RoleBinding> = Api::namespaced(client, "team");
        let pp = PostParams::default();
        let created = create(&api, &pp, &binding()).await.expect("create");
        let replaced = replace(&api, "viewers", &pp, &binding())
            .await
            .expect("replace");
        let patch = Patch::Merge(serde_json::json!({"status": {}}));
        let patched = patch_status(&api, "viewers", &PatchParams::default(), &patch)
            .await
            .expect("patch_status");
        for reply in [created, replaced, patched] {
            assert_eq!(reply.metadata.name.as_deref(), Some("viewers"));
            assert_eq!(reply.metadata.resource_version.as_deref(), Some("7"));
        }
        let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings";
        // A RoleBinding travels as protobuf (crate::wire); the patch as what it is.
        let expected = [
            ("POST", path.to_string(), crate::wire::PROTOBUF),
            ("PUT", format!("{path}/viewers"), crate::wire::PROTOBUF),
            (
                "PATCH",
                format!("{path}/viewers/status"),
                "application/merge-patch+json",
            ),
        ];
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), expected.len());
        for ((method, uri, accept, content_type), (want_method, want_uri, want_type)) in
            seen.iter().zip(&expected)
        {
            assert_eq!((method.as_str(), uri), (*want_method, want_uri));
            assert_eq!(accept, METADATA_ONLY);
            assert_eq!(content_type, want_type);
        }
    }
}
