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

use super::accept::{Acceptor, Outcome, accept};
use super::email::{ACCEPT_PATH, escape};
use super::metrics::Metrics;
use super::ratelimit::{self, Cidr, RateLimiter};
use super::token;

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
}

/// The accept endpoint as a router to merge into the operator's HTTP server (which must
/// serve with `into_make_service_with_connect_info::<SocketAddr>()` for per-client
/// limits; without it all clients share one bucket).
pub fn router(state: AcceptState) -> Router {
    Router::new()
        .route(ACCEPT_PATH, get(page).post(confirm))
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
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
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
    match accept(&state.acceptor, &state.writes, &token).await {
        Ok(Outcome::Joined {
            organization,
            membership,
            invitation,
        }) => {
            state.metrics.accepted("joined");
            publish_accepted(&state.events, &invitation, &membership).await;
            let message = format!("Welcome to {organization}: you are a member now.");
            let details =
                serde_json::json!({"organization": organization, "membership": membership});
            answer(json, StatusCode::OK, "accepted", &message, Some(details))
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
        Err(error) => {
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
    }
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
