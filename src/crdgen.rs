//! The CustomResourceDefinitions of the four kinds, as `kube-org crds` prints them and
//! as `crds/` holds them (a test fails when the two differ).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{Invitation, Membership, Organization, RoleBinding};

/// Every CRD, sorted by name (the order of the files in `crds/`).
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds: Vec<_> = [
        Organization::crd(),
        Membership::crd(),
        Invitation::crd(),
        RoleBinding::crd(),
    ]
    .into_iter()
    .map(unwrap_descriptions)
    .collect();
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds
}

/// Doc comments are wrapped at 90 columns and `kubectl explain` wraps again, so single
/// line breaks in descriptions become spaces (blank lines between paragraphs stay).
fn unwrap_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if key == "description" => {
                            let paragraphs: Vec<String> =
                                text.split("\n\n").map(|p| p.replace('\n', " ")).collect();
                            *text = paragraphs.join("\n\n");
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("a CRD deserializes after rewording")
}

/// The file name a CRD has in `crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as a YAML document (with its leading `---`), exactly as in `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}

/// Every CRD as one multi-document YAML stream: the concatenation of the files in `crds/`.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    all().iter().map(to_yaml).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crds/` is what the generator prints; regenerate with `make crds` when this fails.
    #[test]
    fn checked_in_crds_match_the_generator() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for crd in all() {
            let path = dir.join(file_name(&crd));
            let checked_in = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                checked_in == to_yaml(&crd).expect("serializable CRD"),
                "{} differs from `kube-org crds`; run `make crds`",
                path.display()
            );
        }
    }
}
