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
use http::header::ACCEPT;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{PartialObjectMeta, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `Accept` header of a metadata-only reply.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Creates `obj`.
pub async fn create<K>(api: &Api<K>, pp: &PostParams, obj: &K) -> kube::Result<PartialObjectMeta<K>>
where
    K: kube::Resource + Serialize + Clone + DeserializeOwned + Debug,
{
    let body = serde_json::to_vec(obj).map_err(kube::Error::SerdeError)?;
    let request = Request::new(api.resource_url()).create(pp, body);
    send(api, request.map_err(kube::Error::BuildRequest)?, "create").await
}

/// Replaces the object named `name` by `obj`.
pub async fn replace<K>(
    api: &Api<K>,
    name: &str,
    pp: &PostParams,
    obj: &K,
) -> kube::Result<PartialObjectMeta<K>>
where
    K: kube::Resource + Serialize + Clone + DeserializeOwned + Debug,
{
    let body = serde_json::to_vec(obj).map_err(kube::Error::SerdeError)?;
    let request = Request::new(api.resource_url()).replace(name, pp, body);
    send(api, request.map_err(kube::Error::BuildRequest)?, "replace").await
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
