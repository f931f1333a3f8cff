//! What a create or replace sends: JSON, or for RoleBindings and ClusterRoleBindings
//! Kubernetes' protobuf.
//!
//! kube-org's hottest writes are native RoleBindings of hundreds to thousands of
//! subjects, and an organization's ClusterRoleBinding names every member. The API server decodes a protobuf body of such a binding for less CPU than
//! the same binding as JSON: creating the benchmark's bindings 16 at a time cost it 15%
//! less CPU at 1,000 members and 28% less at 10,000 (3,334 subjects a binding), summed
//! over alternating rounds (docs/benchmarks.md). Built-in kinds accept protobuf; custom
//! resources do not. The one ClusterRole per organization stays JSON.
//!
//! kube and k8s-openapi speak JSON only, and a protobuf library would be a large
//! dependency for one message, so the few fields kube-org writes are encoded here by
//! hand. An object with a field this encoder does not know is sent as JSON: no field is
//! ever dropped.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;

/// Kubernetes' protobuf media type.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
/// JSON's media type.
pub const JSON: &str = "application/json";

/// A request body and its media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

impl Body {
    /// `obj` as JSON.
    pub fn json<T: Serialize + ?Sized>(obj: &T) -> Result<Body, serde_json::Error> {
        Ok(Body {
            bytes: serde_json::to_vec(obj)?,
            content_type: JSON,
        })
    }
}

/// How a kind's objects travel in a create or replace: JSON unless the kind has a
/// cheaper form.
pub trait WireForm: Serialize {
    fn body(&self) -> Result<Body, serde_json::Error> {
        Body::json(self)
    }
}

impl WireForm for ClusterRole {}

impl WireForm for RoleBinding {
    fn body(&self) -> Result<Body, serde_json::Error> {
        protobuf_or_json(self, role_binding(self))
    }
}

/// An organization's ClusterRoleBinding names every member: 10,000 subjects in the
/// large benchmark, written again whenever a member comes or goes.
impl WireForm for ClusterRoleBinding {
    fn body(&self) -> Result<Body, serde_json::Error> {
        protobuf_or_json(self, cluster_role_binding(self))
    }
}

/// `protobuf` when there is one, else `obj` as JSON.
fn protobuf_or_json<T: Serialize>(
    obj: &T,
    protobuf: Option<Vec<u8>>,
) -> Result<Body, serde_json::Error> {
    match protobuf {
        Some(bytes) => Ok(Body {
            bytes,
            content_type: PROTOBUF,
        }),
        None => Body::json(obj),
    }
}

/// The protobuf envelope's prefix ("k8s" and a zero byte), before a `runtime.Unknown`.
const MAGIC: &[u8] = b"k8s\0";

/// `binding` in Kubernetes' protobuf form, or `None` when its metadata sets a field
/// this encoder does not write (kube-org's bindings never do: it is a safeguard).
pub fn role_binding(binding: &RoleBinding) -> Option<Vec<u8>> {
    any_binding(
        "RoleBinding",
        &binding.metadata,
        binding.subjects.as_deref(),
        &binding.role_ref,
    )
}

/// [`role_binding`] for a ClusterRoleBinding (the same message, without a namespace).
pub fn cluster_role_binding(binding: &ClusterRoleBinding) -> Option<Vec<u8>> {
    any_binding(
        "ClusterRoleBinding",
        &binding.metadata,
        binding.subjects.as_deref(),
        &binding.role_ref,
    )
}

/// A RoleBinding or ClusterRoleBinding of `rbac.authorization.k8s.io/v1`: metadata 1,
/// subjects 2, roleRef 3 (`k8s.io/api/rbac/v1/generated.proto`; ObjectMeta's numbers
/// are those of `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`), in the
/// envelope `runtime.Unknown` (typeMeta = 1, raw = 2) after [`MAGIC`].
fn any_binding(
    kind: &str,
    metadata: &ObjectMeta,
    subjects: Option<&[Subject]>,
    role_ref: &RoleRef,
) -> Option<Vec<u8>> {
    if !encodes_all_of(metadata) {
        return None;
    }
    let mut object = Vec::new();
    message(&mut object, 1, |out| object_meta(out, metadata));
    for subject in subjects.into_iter().flatten() {
        message(&mut object, 2, |out| self::subject(out, subject));
    }
    message(&mut object, 3, |out| self::role_ref(out, role_ref));

    let mut body = Vec::with_capacity(object.len() + 64);
    body.extend_from_slice(MAGIC);
    message(&mut body, 1, |out| {
        string(out, 1, "rbac.authorization.k8s.io/v1");
        string(out, 2, kind);
    });
    bytes(&mut body, 2, &object);
    Some(body)
}

/// Whether [`object_meta`] writes every field `meta` sets.
fn encodes_all_of(meta: &ObjectMeta) -> bool {
    let rest = ObjectMeta {
        name: None,
        namespace: None,
        resource_version: None,
        labels: None,
        annotations: None,
        owner_references: None,
        finalizers: None,
        ..meta.clone()
    };
    rest == ObjectMeta::default()
}

/// `ObjectMeta`: name 1, namespace 3, resourceVersion 6, labels 11, annotations 12,
/// ownerReferences 13, finalizers 14.
fn object_meta(out: &mut Vec<u8>, meta: &ObjectMeta) {
    optional_string(out, 1, meta.name.as_deref());
    optional_string(out, 3, meta.namespace.as_deref());
    optional_string(out, 6, meta.resource_version.as_deref());
    for (number, map) in [(11, &meta.labels), (12, &meta.annotations)] {
        for (key, value) in map.iter().flatten() {
            message(out, number, |entry| {
                string(entry, 1, key);
                string(entry, 2, value);
            });
        }
    }
    for owner in meta.owner_references.iter().flatten() {
        message(out, 13, |out| owner_reference(out, owner));
    }
    for finalizer in meta.finalizers.iter().flatten() {
        string(out, 14, finalizer);
    }
}

/// `OwnerReference`: kind 1, name 3, uid 4, apiVersion 5, controller 6,
/// blockOwnerDeletion 7.
fn owner_reference(out: &mut Vec<u8>, owner: &OwnerReference) {
    string(out, 1, &owner.kind);
    string(out, 3, &owner.name);
    string(out, 4, &owner.uid);
    string(out, 5, &owner.api_version);
    optional_bool(out, 6, owner.controller);
    optional_bool(out, 7, owner.block_owner_deletion);
}

/// `Subject`: kind 1, apiGroup 2, name 3, namespace 4.
fn subject(out: &mut Vec<u8>, subject: &Subject) {
    string(out, 1, &subject.kind);
    optional_string(out, 2, subject.api_group.as_deref());
    string(out, 3, &subject.name);
    optional_string(out, 4, subject.namespace.as_deref());
}

/// `RoleRef`: apiGroup 1, kind 2, name 3.
fn role_ref(out: &mut Vec<u8>, role_ref: &RoleRef) {
    string(out, 1, &role_ref.api_group);
    string(out, 2, &role_ref.kind);
    string(out, 3, &role_ref.name);
}

/// Wire types of the protobuf encoding.
const VARINT: u32 = 0;
const LENGTH_DELIMITED: u32 = 2;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn tag(out: &mut Vec<u8>, number: u32, wire_type: u32) {
    varint(out, u64::from(number << 3 | wire_type));
}

fn bytes(out: &mut Vec<u8>, number: u32, value: &[u8]) {
    tag(out, number, LENGTH_DELIMITED);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn string(out: &mut Vec<u8>, number: u32, value: &str) {
    bytes(out, number, value.as_bytes());
}

fn optional_string(out: &mut Vec<u8>, number: u32, value: Option<&str>) {
    if let Some(value) = value {
        string(out, number, value);
    }
}

fn optional_bool(out: &mut Vec<u8>, number: u32, value: Option<bool>) {
    if let Some(value) = value {
        tag(out, number, VARINT);
        varint(out, u64::from(value));
    }
}

/// An embedded message: `fill` writes its fields, then it is appended with its length.
fn message(out: &mut Vec<u8>, number: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    bytes(out, number, &inner);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// One decoded field: its number and its value (a varint, or the bytes).
    #[derive(Debug, PartialEq)]
    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
    }

    /// Reads a varint at `at`; returns it and the position after it.
    fn read_varint(data: &[u8], mut at: usize) -> (u64, usize) {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = data[at];
            value |= u64::from(byte & 0x7f) << shift;
            at += 1;
            if byte < 0x80 {
                return (value, at);
            }
            shift += 7;
        }
    }

    /// Splits a message into its fields, in order (a reference decoder for the tests:
    /// every length must add up exactly).
    fn fields(data: &[u8]) -> Vec<(u32, Value<'_>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let (key, next) = read_varint(data, at);
            let (number, wire_type) = ((key >> 3) as u32, (key & 7) as u32);
            match wire_type {
                VARINT => {
                    let (value, next) = read_varint(data, next);
                    out.push((number, Value::Varint(value)));
                    at = next;
                }
                LENGTH_DELIMITED => {
                    let (len, next) = read_varint(data, next);
                    let end = next + len as usize;
                    out.push((number, Value::Bytes(&data[next..end])));
                    at = end;
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
        assert_eq!(at, data.len(), "the last field overruns the message");
        out
    }

    fn text<'a>(value: &Value<'a>) -> &'a str {
        match value {
            Value::Bytes(b) => std::str::from_utf8(b).expect("utf-8"),
            Value::Varint(v) => panic!("a string expected, got varint {v}"),
        }
    }

    fn inner<'a>(value: &Value<'a>) -> Vec<(u32, Value<'a>)> {
        match value {
            Value::Bytes(b) => fields(b),
            Value::Varint(v) => panic!("a message expected, got varint {v}"),
        }
    }

    fn named(fields: &[(u32, Value<'_>)], number: u32) -> Vec<String> {
        fields
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, v)| text(v).to_string())
            .collect()
    }

    fn binding(subjects: usize) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some("kube-org:acme:view".into()),
                namespace: Some("team-a".into()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/managed-by".into(), "kube-org".into()),
                    ("kube-org.io/organization".into(), "acme".into()),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "kube-org.io/v1alpha1".into(),
                    kind: "Organization".into(),
                    name: "acme".into(),
                    uid: "0b1c".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "view".into(),
            },
            subjects: Some(
                (0..subjects)
                    .map(|i| Subject {
                        kind: "User".into(),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        name: format!("user{i}@example.com"),
                        namespace: None,
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_binding_is_wrapped_in_the_envelope_with_every_field() {
        // 200 subjects: the object is longer than 16 KiB, so lengths take 3 bytes.
        let body = role_binding(&binding(200)).expect("kube-org's bindings encode");
        assert_eq!(&body[..4], MAGIC);
        let unknown = fields(&body[4..]);
        assert_eq!(unknown.len(), 2);
        let type_meta = inner(&unknown[0].1);
        assert_eq!(named(&type_meta, 1), ["rbac.authorization.k8s.io/v1"]);
        assert_eq!(named(&type_meta, 2), ["RoleBinding"]);
        assert_eq!(unknown[1].0, 2);

        let object = inner(&unknown[1].1);
        assert_eq!(object.iter().filter(|(n, _)| *n == 2).count(), 200);
        let meta = inner(&object[0].1);
        assert_eq!(named(&meta, 1), ["kube-org:acme:view"]);
        assert_eq!(named(&meta, 3), ["team-a"]);
        let labels: Vec<(String, String)> = meta
            .iter()
            .filter(|(n, _)| *n == 11)
            .map(|(_, entry)| {
                let entry = inner(entry);
                (named(&entry, 1).concat(), named(&entry, 2).concat())
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("app.kubernetes.io/managed-by".into(), "kube-org".into()),
                ("kube-org.io/organization".into(), "acme".into())
            ]
        );
        let owner = inner(&meta.iter().find(|(n, _)| *n == 13).expect("owner").1);
        assert_eq!(named(&owner, 1), ["Organization"]);
        assert_eq!(named(&owner, 3), ["acme"]);
        assert_eq!(named(&owner, 4), ["0b1c"]);
        assert_eq!(named(&owner, 5), ["kube-org.io/v1alpha1"]);
        assert!(owner.contains(&(6, Value::Varint(1))));
        assert!(owner.contains(&(7, Value::Varint(1))));

        let last = inner(&object.iter().rfind(|(n, _)| *n == 2).expect("subject").1);
        assert_eq!(named(&last, 1), ["User"]);
        assert_eq!(named(&last, 2), ["rbac.authorization.k8s.io"]);
        assert_eq!(named(&last, 3), ["user199@example.com"]);
        assert!(named(&last, 4).is_empty());
        let role_ref = inner(&object.last().expect("roleRef").1);
        assert_eq!(object.last().expect("roleRef").0, 3);
        assert_eq!(named(&role_ref, 2), ["ClusterRole"]);
        assert_eq!(named(&role_ref, 3), ["view"]);
    }

    #[test]
    fn a_field_the_encoder_does_not_know_sends_json_instead() {
        let mut unusual = binding(1);
        unusual.metadata.generate_name = Some("kube-org-".into());
        assert_eq!(role_binding(&unusual), None);
        let body = unusual.body().expect("json");
        assert_eq!(body.content_type, JSON);
        let back: RoleBinding = serde_json::from_slice(&body.bytes).expect("json");
        assert_eq!(back, unusual);

        assert_eq!(binding(1).body().expect("body").content_type, PROTOBUF);
    }

    #[test]
    fn a_cluster_role_binding_is_the_same_message_of_its_own_kind() {
        let namespaced = binding(2);
        let mut metadata = namespaced.metadata.clone();
        metadata.namespace = None;
        let cluster = ClusterRoleBinding {
            metadata,
            role_ref: namespaced.role_ref.clone(),
            subjects: namespaced.subjects.clone(),
        };
        let body = cluster_role_binding(&cluster).expect("encodes");
        let unknown = fields(&body[4..]);
        assert_eq!(named(&inner(&unknown[0].1), 2), ["ClusterRoleBinding"]);
        let object = inner(&unknown[1].1);
        let meta = inner(&object[0].1);
        assert!(named(&meta, 3).is_empty(), "no namespace");
        assert_eq!(object.iter().filter(|(n, _)| *n == 2).count(), 2);
        assert_eq!(cluster.body().expect("body").content_type, PROTOBUF);
    }

    #[test]
    fn varints_take_seven_bits_a_byte() {
        for (value, want) in [
            (0u64, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out, want, "{value}");
            assert_eq!(read_varint(&out, 0), (value, want.len()));
        }
    }
}
