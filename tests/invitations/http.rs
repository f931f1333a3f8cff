//! A minimal HTTP/1.0 client for the local servers under test (the accept endpoint,
//! Mailpit's API): one request per connection, the whole answer read until close.
//! Shared by the invitation tests and the invitation benchmark.

#![allow(dead_code)] // the benchmark uses only part of it

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request to an `http://host:port/path` URL.
pub async fn request(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> Response {
    request_with(method, url, &[], content_type, body).await
}

/// A GET with extra request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Response {
    request_with("GET", url, headers, None, b"").await
}

/// Sends one request with extra headers.
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".to_string()));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("writing the request");
    stream.write_all(body).await.expect("writing the body");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("reading the answer");
    let answer = crate::common::oidc::Answer::parse(&raw);
    Response {
        status: answer.status,
        headers: answer.headers,
        body: answer.body,
    }
}

pub async fn get(url: &str) -> Response {
    request("GET", url, None, b"").await
}

/// Posts `token` as the HTML form does.
pub async fn post_form(url: &str, token: &str) -> Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    request(
        "POST",
        url,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    )
    .await
}

/// Posts `{"token": token}`.
pub async fn post_json(url: &str, token: &str) -> Response {
    let body = serde_json::json!({ "token": token }).to_string();
    request("POST", url, Some("application/json"), body.as_bytes()).await
}
