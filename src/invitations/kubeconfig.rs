//! The kubeconfig the success page offers: the cluster as invitees reach it, and an
//! `exec` credential with kubelogin (`kubectl oidc-login get-token`) at the cluster's
//! OpenID Connect issuer, so the person's own ID token is what kubectl sends.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use url::Url;

use super::ConfigError;

/// Flags describing the cluster for the kubeconfig; flattened into `kube-org run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// The cluster's API server as members reach it, e.g. `https://k8s.example.com:6443`.
    /// With `--oidc-issuer-url`, the success page offers a kubeconfig.
    #[arg(long, env = "KUBE_ORG_CLUSTER_SERVER_URL")]
    pub cluster_server_url: Option<String>,

    /// A PEM file of the CA that signs the API server's certificate, put into the
    /// kubeconfig (default: none, for a server with a publicly trusted certificate).
    #[arg(long, env = "KUBE_ORG_CLUSTER_CA_FILE")]
    pub cluster_ca_file: Option<std::path::PathBuf>,

    /// The client id kubelogin uses at the issuer (a public client, as kubectl runs on
    /// the person's machine); default: `--oidc-client-id`.
    #[arg(long, env = "KUBE_ORG_OIDC_KUBECTL_CLIENT_ID")]
    pub oidc_kubectl_client_id: Option<String>,
}

impl ClusterArgs {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(server) = &self.cluster_server_url {
            match Url::parse(server) {
                Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
                _ => {
                    return Err(ConfigError::Cluster(format!(
                        "--cluster-server-url {server:?} must be an https:// URL"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What every offered kubeconfig shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAccess {
    pub server: String,
    /// The CA bundle, PEM.
    pub ca_pem: Option<String>,
    pub issuer: String,
    pub client_id: String,
}

impl ClusterAccess {
    /// From the flags, when the operator knows the server and the issuer; the CA file is
    /// read now (a file that is not PEM stops the process).
    pub fn from_flags(
        cluster: &ClusterArgs,
        issuer: Option<&str>,
        login_client_id: Option<&str>,
    ) -> Result<Option<ClusterAccess>, ConfigError> {
        let (Some(server), Some(issuer)) = (&cluster.cluster_server_url, issuer) else {
            return Ok(None);
        };
        let Some(client_id) = cluster
            .oidc_kubectl_client_id
            .as_deref()
            .or(login_client_id)
        else {
            return Ok(None);
        };
        let ca_pem = match &cluster.cluster_ca_file {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::Cluster(format!(
                        "reading --cluster-ca-file {}: {e}",
                        path.display()
                    ))
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ConfigError::Cluster(format!(
                        "--cluster-ca-file {} holds no PEM certificate",
                        path.display()
                    )));
                }
                Some(pem)
            }
            None => None,
        };
        Ok(Some(ClusterAccess {
            server: server.clone(),
            ca_pem,
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
        }))
    }

    /// A kubeconfig for `organization` whose context opens in `namespace`.
    pub fn kubeconfig(&self, organization: &str, namespace: Option<&str>) -> String {
        let mut cluster = serde_json::json!({"server": self.server});
        if let Some(pem) = &self.ca_pem {
            cluster["certificate-authority-data"] = STANDARD.encode(pem).into();
        }
        let mut context =
            serde_json::json!({"cluster": organization, "user": format!("{organization}-oidc")});
        if let Some(namespace) = namespace {
            context["namespace"] = namespace.into();
        }
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": organization, "cluster": cluster}],
            "contexts": [{"name": organization, "context": context}],
            "current-context": organization,
            "users": [{
                "name": format!("{organization}-oidc"),
                "user": {"exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "kubectl",
                    "args": [
                        "oidc-login",
                        "get-token",
                        format!("--oidc-issuer-url={}", self.issuer),
                        format!("--oidc-client-id={}", self.client_id),
                        "--oidc-extra-scope=email",
                    ],
                    "interactiveMode": "IfAvailable",
                    "provideClusterInfo": false,
                }},
            }],
        });
        serde_yaml::to_string(&config).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_the_ca_and_kubelogin() {
        let access = ClusterAccess {
            server: "https://k8s.example.com:6443".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
            issuer: "https://login.example.com".into(),
            client_id: "kubectl".into(),
        };
        let yaml = access.kubeconfig("acme", Some("acme-prod"));
        let config: kube::config::Kubeconfig = serde_yaml::from_str(&yaml).expect("a kubeconfig");
        assert_eq!(config.current_context.as_deref(), Some("acme"));
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://k8s.example.com:6443")
        );
        assert!(cluster.certificate_authority_data.is_some());
        let context = config.contexts[0].context.as_ref().unwrap();
        assert_eq!(context.namespace.as_deref(), Some("acme-prod"));
        let exec = config.auth_infos[0]
            .auth_info
            .as_ref()
            .unwrap()
            .exec
            .as_ref()
            .unwrap();
        assert_eq!(exec.command.as_deref(), Some("kubectl"));
        let args = exec.args.clone().unwrap();
        assert_eq!(args[..2], ["oidc-login", "get-token"]);
        assert!(args.contains(&"--oidc-issuer-url=https://login.example.com".to_string()));
        assert!(args.contains(&"--oidc-client-id=kubectl".to_string()));
    }

    #[test]
    fn a_kubeconfig_is_offered_only_with_a_server_and_an_issuer() {
        let flags = ClusterArgs {
            cluster_server_url: Some("https://k8s.example.com".into()),
            ..Default::default()
        };
        assert!(
            ClusterAccess::from_flags(&flags, None, Some("kube-org"))
                .unwrap()
                .is_none()
        );
        let access = ClusterAccess::from_flags(&flags, Some("https://idp"), Some("kube-org"))
            .unwrap()
            .unwrap();
        assert_eq!(access.client_id, "kube-org");
        assert!(
            ClusterAccess::from_flags(&ClusterArgs::default(), Some("https://idp"), Some("x"))
                .unwrap()
                .is_none()
        );
        assert!(
            ClusterArgs {
                cluster_server_url: Some("http://k8s".into()),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
