//! The accept endpoint: `GET /invitations/accept?token=…` shows a confirm button and
//! does nothing else; `POST /invitations/accept` (JSON `{"token": …}` or the form)
//! accepts. The invitee needs no Kubernetes credentials: the token proves the mailbox.
//!
//! Every answer carries `Referrer-Policy: no-referrer` and `Cache-Control: no-store`;
//! bodies are limited in size; each client (an IPv4 address or an IPv6 /64, seen
//! through `--trusted-proxies` only) is rate limited, and all clients together too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use kube::Resource;
use kube::runtime::events::EventType;
use serde::Deserialize;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::accept::{Acceptor, Outcome, accept, requires_login};
use super::email::{ACCEPT_PATH, escape};
use super::kubeconfig::ClusterAccess;
use super::login::{CALLBACK_PATH, Pending, Provider};
use super::metrics::Metrics;
use super::ratelimit::{self, Cidr, RateLimiter};
use super::token;
use super::welcome::{Reach, reach};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 4 * 1024;

/// The one answer for unknown, used, expired and cancelled links.
pub const NEUTRAL: &str = "This invitation link cannot be used: it may have expired, been used already or been cancelled. Ask the organization for a new invitation.";

/// What the endpoint needs.
#[derive(Clone)]
pub struct AcceptState {
    /// The client, the watch-fed caches and the claims namespace acceptance uses.
    pub acceptor: Acceptor,
    /// Counts the API writes an acceptance makes.
    pub writes: crate::metrics::Metrics,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<RateLimiter>,
    /// `--trusted-proxies`: only from these peers is `X-Forwarded-For` believed.
    pub trusted_proxies: Arc<Vec<Cidr>>,
    pub events: crate::events::Events,
    /// The cluster's OpenID Connect provider, for `spec.invitations.requireLogin`.
    pub login: Option<Arc<Provider>>,
    /// The cluster for the kubeconfig the success page offers.
    pub cluster: Option<Arc<ClusterAccess>>,
}

/// The Content-Security-Policy of every answer: forms post only here, or redirect to
/// the sign-in provider (a form's redirect is checked against `form-action` too).
fn content_security_policy(login: Option<&Provider>) -> HeaderValue {
    let provider = login
        .and_then(|p| url::Url::parse(&p.config.issuer).ok())
        .map(|u| format!(" {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{provider}; frame-ancestors 'none'"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        )
    })
}

/// The accept endpoint as a router to merge into the operator's HTTP server (which must
/// serve with `into_make_service_with_connect_info::<SocketAddr>()` for per-client
/// limits; without it all clients share one bucket).
pub fn router(state: AcceptState) -> Router {
    Router::new()
        .route(ACCEPT_PATH, get(page).post(confirm))
        .route(CALLBACK_PATH, get(callback))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Rate limit first, then the privacy headers on whatever the handler answers.
async fn guard(State(state): State<AcceptState>, request: Request, next: Next) -> Response {
    let client = client_address(&request, &state.trusted_proxies);
    let mut response = match state.limiter.check(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(limited) => {
            let wait = limited.retry_after;
            state.metrics.accepted(if limited.global {
                "rate-limited-global"
            } else {
                "rate-limited"
            });
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests; try again in a minute.",
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        content_security_policy(state.login.as_deref()),
    );
    response
}

/// The rate-limit bucket of the request's client (see [`ratelimit::client_key`]).
fn client_address(request: &Request, trusted_proxies: &[Cidr]) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    ratelimit::client_key(peer, forwarded, trusted_proxies)
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\"><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    )
}

fn neutral_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(html_page(
            "Invitation",
            &format!("<p>{}</p>", escape(NEUTRAL)),
        )),
    )
        .into_response()
}

/// The confirm page. It reads nothing and changes nothing: link scanners that fetch it
/// accept nothing.
async fn page(Query(query): Query<TokenQuery>) -> Response {
    if !token::well_formed(&query.token) {
        return neutral_page();
    }
    let body = format!(
        "<p>You have been invited to join an organization. The email you received names it \
         and the roles offered.</p>\
         <form method=\"post\" action=\"accept\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <button type=\"submit\">Accept the invitation</button></form>",
        escape(&query.token)
    );
    Html(html_page("Accept the invitation", &body)).into_response()
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

/// Accepts from a JSON body or a form; answers in kind.
async fn confirm(State(state): State<AcceptState>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let token = if json {
        serde_json::from_slice::<TokenBody>(&body)
            .ok()
            .map(|b| b.token)
    } else {
        url::form_urlencoded::parse(&body)
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    };
    let Some(token) = token else {
        state.metrics.accepted("bad-request");
        let message = "send the token as JSON {\"token\": \"...\"} or as the form field token";
        return answer(json, StatusCode::BAD_REQUEST, "bad-request", message, None);
    };
    match requires_login(&state.acceptor, &token).await {
        Ok(Some(true)) => return start_login(&state, json, &token).await,
        Ok(_) => {}
        Err(error) => return unavailable(&state, json, &error),
    }
    let outcome = accept(&state.acceptor, &state.writes, &token, None).await;
    respond(&state, json, outcome).await
}

/// What an acceptance (with or without a sign-in) answers.
async fn respond(
    state: &AcceptState,
    json: bool,
    outcome: Result<Outcome, super::accept::AcceptError>,
) -> Response {
    match outcome {
        Ok(Outcome::Joined {
            organization,
            membership,
            invitation,
            org,
            user,
        }) => {
            state.metrics.accepted("joined");
            publish_accepted(&state.events, &invitation, &membership).await;
            let namespaces = state.acceptor.cache.namespaces_of(&org.name_any());
            let namespaces: Vec<&Namespace> = namespaces.iter().map(|n| n.as_ref()).collect();
            let reach = reach(
                &org,
                &invitation,
                &user,
                &namespaces,
                &state.acceptor.identity,
            );
            let kubeconfig = state.cluster.as_ref().map(|c| {
                c.kubeconfig(
                    &org.name_any(),
                    reach.access.first().map(|a| a.namespace.as_str()),
                )
            });
            let message = format!("Welcome to {organization}: you are a member now.");
            if !json {
                let body = welcome_page(&message, &org.name_any(), &reach, kubeconfig.as_deref());
                return (
                    StatusCode::OK,
                    Html(html_page("Invitation accepted", &body)),
                )
                    .into_response();
            }
            let mut details = serde_json::json!({
                "organization": organization,
                "membership": membership,
                "user": reach.user,
                "roles": reach.roles,
                "access": reach.access,
            });
            if let Some(kubeconfig) = kubeconfig {
                details["kubeconfig"] = kubeconfig.into();
            }
            answer(json, StatusCode::OK, "accepted", &message, Some(details))
        }
        Ok(Outcome::LoginRequired) => {
            state.metrics.accepted("login-required");
            answer(
                json,
                StatusCode::FORBIDDEN,
                "login-required",
                LOGIN_REQUIRED,
                None,
            )
        }
        Ok(Outcome::WrongPerson {
            signed_in,
            invited,
            invitation,
        }) => {
            state.metrics.accepted("wrong-person");
            let note = format!(
                "someone signed in as {signed_in} to accept the invitation of {invited}; refused, nothing was created"
            );
            publish_refused(&state.events, &invitation, &note).await;
            let message = format!(
                "You signed in as {signed_in}, but this invitation is for {invited}. Nothing was created and the link still works: sign in as {invited} (sign out at the provider first, or use a private window), or ask the organization to invite {signed_in}."
            );
            answer(json, StatusCode::FORBIDDEN, "wrong-person", &message, None)
        }
        Ok(Outcome::Unverified {
            signed_in,
            invitation,
        }) => {
            state.metrics.accepted("unverified");
            let note = format!(
                "someone signed in as {signed_in}, an address the provider has not verified; refused, nothing was created"
            );
            publish_refused(&state.events, &invitation, &note).await;
            let message = format!(
                "You signed in as {signed_in}, but the sign-in provider has not verified that address. Nothing was created: verify the address with the provider, then open the invitation link again."
            );
            answer(
                json,
                StatusCode::FORBIDDEN,
                "unverified-email",
                &message,
                None,
            )
        }
        Ok(Outcome::Invalid) => {
            state.metrics.accepted("invalid");
            if json {
                answer(json, StatusCode::NOT_FOUND, "invalid-link", NEUTRAL, None)
            } else {
                neutral_page()
            }
        }
        Ok(Outcome::Refused(message)) => {
            state.metrics.accepted("refused");
            answer(json, StatusCode::CONFLICT, "refused", &message, None)
        }
        Err(error) => unavailable(state, json, &error),
    }
}

fn unavailable(state: &AcceptState, json: bool, error: &dyn std::fmt::Display) -> Response {
    state.metrics.accepted("error");
    tracing::warn!(%error, "accepting an invitation failed");
    let message = "The invitation could not be accepted right now; try again in a minute.";
    answer(
        json,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        message,
        None,
    )
}

const LOGIN_REQUIRED: &str = "This invitation asks you to sign in with your organization account: open the link from the email in a browser.";

/// Sends the browser to the provider, the sign-in's secrets in a cookie.
async fn start_login(state: &AcceptState, json: bool, token: &str) -> Response {
    let Some(provider) = &state.login else {
        state.metrics.accepted("login-unavailable");
        let message = "This organization asks invitees to sign in, but kube-org is not connected to the cluster's sign-in provider (--oidc-issuer-url). Tell the organization's owners; your link keeps working until it expires.";
        return answer(
            json,
            StatusCode::SERVICE_UNAVAILABLE,
            "login-unavailable",
            message,
            None,
        );
    };
    if json {
        state.metrics.accepted("login-required");
        return answer(
            json,
            StatusCode::FORBIDDEN,
            "login-required",
            LOGIN_REQUIRED,
            None,
        );
    }
    let now = Timestamp::now().as_second();
    let pending = match Pending::new(token, now) {
        Ok(pending) => pending,
        Err(error) => return unavailable(state, json, &error),
    };
    let url = match provider.authorization_url(&pending).await {
        Ok(url) => url,
        Err(error) => return unavailable(state, json, &error),
    };
    state.metrics.accepted("login-started");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(&pending.set_cookie(secure(provider))) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

fn secure(provider: &Provider) -> bool {
    provider.config.redirect_url.scheme() == "https"
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider sends the browser back here: the state is checked against the cookie,
/// the code exchanged, the ID token verified, and only then is the invitation accepted
/// for the person it names.
async fn callback(
    State(state): State<AcceptState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(provider) = state.login.clone() else {
        return neutral_page();
    };
    let now = Timestamp::now().as_second();
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let pending = Pending::from_cookies(cookies).filter(|p| {
        query
            .state
            .as_deref()
            .is_some_and(|answered| p.answers(answered, now))
    });
    let response = match pending {
        None => {
            state.metrics.accepted("login-invalid");
            page_with(
                StatusCode::BAD_REQUEST,
                "This sign-in cannot be finished: it took too long, or it was started in another browser. Open the link from the invitation email again.",
            )
        }
        Some(_) if query.error.is_some() => {
            state.metrics.accepted("login-denied");
            page_with(
                StatusCode::FORBIDDEN,
                &format!(
                    "The sign-in provider did not sign you in ({}: {}). Nothing was created; open the link from the invitation email to try again.",
                    query.error.as_deref().unwrap_or_default(),
                    query.error_description.as_deref().unwrap_or_default()
                ),
            )
        }
        Some(pending) => match provider
            .finish(&pending, query.code.as_deref().unwrap_or_default(), now)
            .await
        {
            Ok(signed_in) => {
                let outcome = accept(
                    &state.acceptor,
                    &state.writes,
                    &pending.token,
                    Some(&signed_in),
                )
                .await;
                respond(&state, false, outcome).await
            }
            Err(error) => {
                state.metrics.accepted("login-failed");
                tracing::warn!(%error, "an invitee's sign-in failed");
                page_with(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "The sign-in could not be completed: {error}. Nothing was created; open the link from the invitation email to try again."
                    ),
                )
            }
        },
    };
    let mut response = response;
    if let Ok(cookie) = HeaderValue::from_str(&Pending::clear_cookie(secure(&provider))) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn page_with(code: StatusCode, message: &str) -> Response {
    (
        code,
        Html(html_page(
            "Invitation",
            &format!("<p>{}</p>", escape(message)),
        )),
    )
        .into_response()
}

/// The success page: who the cluster knows the person as, where they can go, and a
/// kubeconfig when the operator knows the cluster.
fn welcome_page(message: &str, org: &str, reach: &Reach, kubeconfig: Option<&str>) -> String {
    let mut body = format!(
        "<p>{}</p><p>The cluster knows you as <code>{}</code>.</p><h2>Where you can go</h2>",
        escape(message),
        escape(&reach.user)
    );
    if reach.access.is_empty() {
        body.push_str(
            "<p>Your roles give you no access inside the organization's resources yet \
             (an organization-level role, or no resource of that type exists so far).</p>",
        );
    } else {
        body.push_str("<ul id=\"access\">");
        for entry in &reach.access {
            body.push_str(&format!(
                "<li><code>{}</code>: {}</li>",
                escape(&entry.namespace),
                escape(&entry.cluster_roles.join(", "))
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Your roles</h2><ul>");
    for role in &reach.roles {
        body.push_str(&format!(
            "<li>{} on {}</li>",
            escape(&role.role),
            escape(&role.scope)
        ));
    }
    body.push_str("</ul>");
    if let Some(kubeconfig) = kubeconfig {
        let namespace = reach
            .access
            .first()
            .map(|a| a.namespace.as_str())
            .unwrap_or("default");
        body.push_str(&format!(
            "<h2>Connect with kubectl</h2><p>Install kubelogin (<code>kubectl krew install oidc-login</code>), \
             save this as <code>~/.kube/{org}.yaml</code>, then run \
             <code>KUBECONFIG=~/.kube/{org}.yaml kubectl get pods -n {namespace}</code>: \
             kubectl opens your browser to sign in.</p><pre id=\"kubeconfig\" style=\"white-space:pre-wrap;overflow-wrap:anywhere\">{}</pre>",
            escape(kubeconfig),
            org = escape(org),
            namespace = escape(namespace),
        ));
    }
    body
}

fn answer(
    json: bool,
    code: StatusCode,
    status: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Response {
    if json {
        let mut body = serde_json::json!({"status": status, "message": message});
        if let (Some(map), Some(serde_json::Value::Object(extra))) = (body.as_object_mut(), details)
        {
            map.extend(extra);
        }
        (code, Json(body)).into_response()
    } else {
        let title = if code.is_success() {
            "Invitation accepted"
        } else {
            "Invitation"
        };
        (
            code,
            Html(html_page(title, &format!("<p>{}</p>", escape(message)))),
        )
            .into_response()
    }
}

/// A Warning Event on the Invitation: a sign-in to accept it was refused.
async fn publish_refused(
    events: &crate::events::Events,
    invitation: &crate::api::Invitation,
    note: &str,
) {
    events
        .publish(
            &invitation.object_ref(&()),
            EventType::Warning,
            "SignInRefused",
            note,
            "Accept",
        )
        .await;
}

async fn publish_accepted(
    events: &crate::events::Events,
    invitation: &crate::api::Invitation,
    membership: &str,
) {
    let note = format!(
        "{} accepted; Membership {membership}",
        invitation.spec.email.normalized()
    );
    events
        .publish(
            &invitation.object_ref(&()),
            EventType::Normal,
            "Accepted",
            &note,
            "Accept",
        )
        .await;
}
