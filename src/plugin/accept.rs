//! `kubectl org accept TOKEN`: posts the token from the invitation email to kube-org's
//! accept endpoint (`POST <base>/invitations/accept`, JSON `{"token": ...}`). The invitee
//! needs no Kubernetes credentials: the token proves the mailbox.

use std::io::BufRead;
use std::time::Duration;

// axum re-exports the `http` crate that kube's client speaks.
use axum::http::{Method, Request, Uri, header};
use kube::client::Body;
use serde::Deserialize;

use super::cli::AcceptArgs;
use super::error::{PluginError, chain};
use super::output::emit;

/// The path of the accept endpoint below its base URL.
pub const ACCEPT_PATH: &str = "/invitations/accept";

/// How long the whole exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where to post and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptRequest {
    /// The endpoint's base URL (scheme, host and any path prefix), no trailing slash.
    pub base: String,
    pub token: String,
}

impl AcceptRequest {
    /// The endpoint's full URL.
    pub fn url(&self) -> String {
        format!("{}{ACCEPT_PATH}", self.base)
    }
}

/// The request, from `TOKEN` (a token, or the link from the email) and `--url` (which
/// wins over the link's host when both are given).
pub fn accept_request(token: &str, url: Option<&str>) -> Result<AcceptRequest, PluginError> {
    let token = token.trim();
    let (link_base, token) = match split_link(token) {
        Some((base, token)) => (Some(base), token),
        None => (None, token.to_string()),
    };
    if token.is_empty() {
        return Err(PluginError::Usage(
            "the token is empty: pass the token from the invitation email, or the whole link"
                .into(),
        ));
    }
    let base = url.map(str::to_string).or(link_base).ok_or_else(|| {
        PluginError::Usage(
            "accept needs the accept endpoint's address: pass --url https://org.example.com, set KUBE_ORG_ACCEPT_URL, or paste the whole link from the email".into(),
        )
    })?;
    let base = base.trim().trim_end_matches('/');
    let base = base.strip_suffix(ACCEPT_PATH).unwrap_or(base);
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(PluginError::Usage(format!(
            "--url {base:?} is not an http:// or https:// URL"
        )));
    }
    base.parse::<Uri>()
        .map_err(|e| PluginError::Usage(format!("--url {base:?} is not a URL: {e}")))?;
    Ok(AcceptRequest {
        base: base.to_string(),
        token,
    })
}

/// A link `<base>/invitations/accept?token=<token>` split into base and token.
fn split_link(link: &str) -> Option<(String, String)> {
    if !(link.starts_with("https://") || link.starts_with("http://")) {
        return None;
    }
    let (path, query) = link.split_once('?')?;
    let base = path.trim_end_matches('/').strip_suffix(ACCEPT_PATH)?;
    let token = query
        .split(['&', '#'])
        .find_map(|pair| pair.strip_prefix("token="))?;
    Some((base.to_string(), token.to_string()))
}

/// What the endpoint answers in JSON.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    message: String,
}

/// Reads the token when `TOKEN` is `-`: the first line of standard input.
fn read_token(token: &str) -> Result<String, PluginError> {
    if token != "-" {
        return Ok(token.to_string());
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line)
}

/// `kubectl org accept`.
pub async fn accept(args: &AcceptArgs) -> Result<(), PluginError> {
    let request = accept_request(&read_token(&args.token)?, args.url.as_deref())?;
    let (status, body) = post(&request).await?;
    let answer: Option<Answer> = serde_json::from_slice(&body).ok();
    match (status, answer) {
        (200..=299, answer) => {
            let message = answer
                .map(|a| a.message)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "The invitation was accepted.".to_string());
            emit(&format!("{message}\n"))
        }
        (_, Some(answer)) if !answer.message.is_empty() => Err(PluginError::AcceptRefused {
            status,
            message: answer.message,
        }),
        (status, _) => Err(PluginError::AcceptNotAnEndpoint {
            url: request.url(),
            status,
        }),
    }
}

/// Posts the token; the status code and body. Uses kube's HTTP stack (TLS with the
/// system's roots), without credentials and without retries: a token works once.
async fn post(request: &AcceptRequest) -> Result<(u16, Vec<u8>), PluginError> {
    let unreachable = |reason: String| PluginError::AcceptUnreachable {
        url: request.url(),
        reason,
    };
    let base: Uri = request
        .base
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| unreachable(e.to_string()))?;
    // The client joins the base (with any path prefix) and the request's path.
    let mut config = kube::Config::new(base);
    config.default_retry = false;
    config.read_timeout = Some(TIMEOUT);
    let client = kube::Client::try_from(config).map_err(|e| unreachable(chain(&e)))?;
    let body = serde_json::json!({ "token": request.token }).to_string();
    let http_request = Request::builder()
        .method(Method::POST)
        .uri(ACCEPT_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body.into_bytes()))
        .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let response = client.send(http_request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect_bytes().await?;
        Ok::<_, kube::Error>((status, body.to_vec()))
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(unreachable(chain(&error))),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_needs_the_url() {
        assert_eq!(
            accept_request(" abc ", Some("https://org.example.com/")).expect("valid"),
            (AcceptRequest {
                base: "https://org.example.com".into(),
                token: "abc".into()
            })
        );
        let error = accept_request("abc", None).expect_err("no URL");
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("KUBE_ORG_ACCEPT_URL"), "{error}");
    }

    #[test]
    fn a_link_carries_both() {
        let link = "https://org.example.com/kube-org/invitations/accept?token=t0k&x=1";
        assert_eq!(
            accept_request(link, None).expect("valid"),
            (AcceptRequest {
                base: "https://org.example.com/kube-org".into(),
                token: "t0k".into()
            })
        );
        assert_eq!(
            accept_request(link, Some("http://127.0.0.1:8080"))
                .expect("valid")
                .url(),
            "http://127.0.0.1:8080/invitations/accept"
        );
    }

    #[test]
    fn the_url_may_name_the_endpoint_itself() {
        assert_eq!(
            accept_request("abc", Some("http://localhost:8080/invitations/accept"))
                .expect("valid")
                .url(),
            "http://localhost:8080/invitations/accept"
        );
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for (token, url) in [
            ("", Some("https://org.example.com")),
            ("abc", Some("org.example.com")),
            ("abc", Some("https://exa mple.com")),
            ("https://org.example.com/other?token=abc", None),
        ] {
            let error = accept_request(token, url).expect_err(token);
            assert_eq!(error.exit_code(), 2, "{token} {url:?}: {error}");
        }
    }
}
