//! Status writes: only when the status differs from the cached object's, by
//! server-side apply on the status subresource, with a metadata-only reply
//! ([`crate::metadata_reply`]).

use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::api::FIELD_MANAGER;
use crate::metrics::Metrics;

/// Writes `status` on `obj` unless `unchanged` (the caller compared it with the cached
/// status); returns the API server's reply (the object's metadata) if it wrote.
pub async fn write_if_changed<K, S>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    obj: &K,
    unchanged: bool,
    status: &S,
) -> Result<Option<PartialObjectMeta<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    if unchanged {
        return Ok(None);
    }
    // Serialised straight from `status` (a `serde_json::Value` copy of a 1,000-entry
    // access list cost more memory than the list).
    let body = StatusApply {
        api_version: &K::api_version(&()),
        kind: &K::kind(&()),
        status,
    };
    metrics.write(resource, "apply");
    match crate::metadata_reply::patch_status(
        api,
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    {
        Ok(reply) => Ok(Some(reply)),
        // Deleted meanwhile: its status no longer matters.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The body of a status apply: the object's type and its status, borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a, S> {
    api_version: &'a str,
    kind: &'a str,
    status: &'a S,
}
