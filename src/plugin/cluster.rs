//! Talking to the cluster: the client from the kubeconfig, the organization a command
//! works on (and its home namespace), and finding its Invitations and Memberships by
//! name or email.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::api::fields::normalize_email;
use crate::api::{Invitation, InvitationPhase, Membership, Organization, RoleBinding};

use super::cli::KubeArgs;
use super::error::PluginError;

/// The field manager of what the plugin writes.
pub const FIELD_MANAGER: &str = "kubectl-org";

/// A client for the cluster the kubeconfig (or `--kubeconfig`/`--context`) names.
pub async fn client(args: &KubeArgs) -> Result<Client, PluginError> {
    let config_error = |e: &dyn std::error::Error| PluginError::KubeConfig(super::error::chain(e));
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| config_error(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| config_error(&e))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| config_error(&e))?,
        None => Config::infer().await.map_err(|e| config_error(&e))?,
    };
    Client::try_from(config).map_err(|e| config_error(&e))
}

/// One organization and where its objects live.
pub struct OrgContext {
    pub client: Client,
    pub name: String,
    pub home: String,
    pub organization: Organization,
}

impl OrgContext {
    /// Reads the Organization `name`; a clear error when there is none.
    pub async fn load(client: Client, name: &str) -> Result<OrgContext, PluginError> {
        let organization = Api::<Organization>::all(client.clone())
            .get_opt(name)
            .await
            .map_err(|e| PluginError::kube(format!("reading organization {name}"), e))?
            .ok_or_else(|| PluginError::OrganizationNotFound(name.to_string()))?;
        Ok(OrgContext {
            client,
            name: name.to_string(),
            home: organization.home_namespace(),
            organization,
        })
    }

    pub fn invitations(&self) -> Api<Invitation> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    pub fn memberships(&self) -> Api<Membership> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    /// The organization's kube-org RoleBindings.
    pub fn bindings(&self) -> Api<RoleBinding> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    /// Every kube-org RoleBinding of the organization.
    pub async fn list_bindings(&self) -> Result<Vec<RoleBinding>, PluginError> {
        self.list(self.bindings(), "listing the role bindings")
            .await
    }

    /// Every Invitation of the organization.
    pub async fn list_invitations(&self) -> Result<Vec<Invitation>, PluginError> {
        self.list(self.invitations(), "listing the invitations")
            .await
    }

    /// Every Membership of the organization.
    pub async fn list_memberships(&self) -> Result<Vec<Membership>, PluginError> {
        self.list(self.memberships(), "listing the members").await
    }

    async fn list<K>(&self, api: Api<K>, action: &str) -> Result<Vec<K>, PluginError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.list(&Default::default()).await {
            Ok(list) => Ok(list.items),
            Err(error) => Err(self.error(action, error)),
        }
    }

    /// The Invitation named `target`, or the one for the email `target`.
    pub async fn find_invitation(&self, target: &str) -> Result<Invitation, PluginError> {
        let not_found = || PluginError::InvitationNotFound {
            target: target.to_string(),
            org: self.name.clone(),
        };
        if !target.contains('@') {
            return self
                .invitations()
                .get_opt(target)
                .await
                .map_err(|e| self.error(&format!("reading invitation {target}"), e))?
                .ok_or_else(not_found);
        }
        let found = invitations_for(self.list_invitations().await?, target);
        match <[Invitation; 1]>::try_from(found) {
            Ok([one]) => Ok(one),
            Err(found) if found.is_empty() => Err(not_found()),
            Err(found) => Err(PluginError::AmbiguousInvitation {
                email: target.to_string(),
                org: self.name.clone(),
                names: found
                    .iter()
                    .map(|i| i.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The Membership of `email`.
    pub async fn find_membership(&self, email: &str) -> Result<Membership, PluginError> {
        let wanted = normalize_email(email);
        self.list_memberships()
            .await?
            .into_iter()
            .find(|m| m.spec.email.normalized() == wanted)
            .ok_or_else(|| PluginError::MemberNotFound {
                email: email.to_string(),
                org: self.name.clone(),
            })
    }

    /// A Kubernetes error while `action` in this organization.
    pub fn error(&self, action: &str, error: kube::Error) -> PluginError {
        PluginError::kube(
            format!(
                "{action} of organization {} (namespace {})",
                self.name, self.home
            ),
            error,
        )
    }
}

/// The invitations for `email`: the live ones when there are any (an accepted invitation
/// kept around for the record does not make a new one ambiguous).
pub fn invitations_for(all: Vec<Invitation>, email: &str) -> Vec<Invitation> {
    let wanted = normalize_email(email);
    let (live, accepted): (Vec<_>, Vec<_>) = all
        .into_iter()
        .filter(|i| i.spec.email.normalized() == wanted)
        .partition(|i| phase(i) != Some(InvitationPhase::Accepted));
    if live.is_empty() { accepted } else { live }
}

/// The phase of an invitation, if kube-org has set one.
pub fn phase(invitation: &Invitation) -> Option<InvitationPhase> {
    invitation.status.as_ref().and_then(|s| s.phase)
}

/// The phase as printed: `Pending`, `Accepted`, `Expired`, or `-` before kube-org has
/// seen the invitation.
pub fn phase_name(invitation: &Invitation) -> String {
    phase(invitation).map_or_else(|| "-".to_string(), |p| format!("{p:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invitation(name: &str, email: &str, phase: Option<&str>) -> Invitation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
            "metadata": {"name": name, "namespace": "org-acme"},
            "spec": {"email": email, "roles": []},
            "status": phase.map(|p| serde_json::json!({"phase": p})),
        }))
        .expect("an invitation")
    }

    fn names(found: Vec<Invitation>) -> Vec<String> {
        found.into_iter().filter_map(|i| i.metadata.name).collect()
    }

    #[test]
    fn finds_by_email_case_insensitively_preferring_live_invitations() {
        let all = vec![
            invitation("old", "Bob@Example.com", Some("Accepted")),
            invitation("new", "bob@example.com", Some("Pending")),
            invitation("other", "carol@example.com", None),
        ];
        assert_eq!(
            names(invitations_for(all.clone(), "BOB@example.com")),
            ["new"]
        );
        assert_eq!(
            names(invitations_for(all[..1].to_vec(), "bob@example.com")),
            ["old"]
        );
        assert!(invitations_for(all, "dave@example.com").is_empty());
    }

    #[test]
    fn phases_print_as_kubectl_shows_them() {
        assert_eq!(
            phase_name(&invitation("a", "a@example.com", Some("Expired"))),
            "Expired"
        );
        assert_eq!(phase_name(&invitation("a", "a@example.com", None)), "-");
    }
}
