//! Reading mail through Mailpit's HTTP API, and a Mailpit of a test's own that the
//! test can stop and start again (an SMTP outage).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::{eventually, free_port, http_get_status};
use super::http;

/// One email as Mailpit stored it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub subject: String,
    pub from: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The accept link in the text part.
    pub fn link(&self) -> String {
        let start = self
            .text
            .find("http")
            .filter(|_| self.text.contains("/invitations/accept?token="))
            .unwrap_or_else(|| panic!("no accept link in:\n{}", self.text));
        let link: String = self.text[start..]
            .lines()
            .find(|line| line.contains("/invitations/accept?token="))
            .map(|line| line.trim().to_string())
            .unwrap_or_default();
        assert!(link.contains("token="), "no link in {:?}", self.text);
        link
    }

    /// The token of the accept link.
    pub fn token(&self) -> String {
        let link = self.link();
        link.split_once("token=")
            .map(|(_, token)| token.to_string())
            .unwrap_or_default()
    }
}

/// A Mailpit HTTP API.
#[derive(Clone, Debug)]
pub struct Mailpit {
    pub api: String,
}

impl Mailpit {
    /// The Mailpit `make test` started.
    pub fn shared() -> Mailpit {
        Mailpit {
            api: std::env::var("KUBE_ORG_MAILPIT_API").expect(
                "KUBE_ORG_MAILPIT_API is not set: run the tests with `make test`, which starts Mailpit",
            ),
        }
    }

    /// The ids of the messages to `address`, oldest first.
    pub async fn ids_to(&self, address: &str) -> Vec<String> {
        let query: String =
            url::form_urlencoded::byte_serialize(format!("to:{address}").as_bytes()).collect();
        let answer = http::get(&format!(
            "{}/api/v1/search?query={query}&limit=100",
            self.api
        ))
        .await;
        assert_eq!(answer.status, 200, "Mailpit search: {}", answer.body);
        let json = answer.json();
        let mut found: Vec<(String, String)> = json["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                m["To"].as_array().is_some_and(|to| {
                    to.iter().any(|t| {
                        t["Address"]
                            .as_str()
                            .is_some_and(|a| a.eq_ignore_ascii_case(address))
                    })
                })
            })
            .map(|m| {
                (
                    m["Created"].as_str().unwrap_or_default().to_string(),
                    m["ID"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// One message.
    pub async fn message(&self, id: &str) -> Mail {
        let answer = http::get(&format!("{}/api/v1/message/{id}", self.api)).await;
        assert_eq!(answer.status, 200, "Mailpit message {id}: {}", answer.body);
        let json = answer.json();
        Mail {
            subject: json["Subject"].as_str().unwrap_or_default().to_string(),
            from: json["From"]["Address"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            text: json["Text"].as_str().unwrap_or_default().to_string(),
            html: json["HTML"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Waits until `count` messages to `address` arrived and returns them, oldest first.
    pub async fn wait_for(&self, address: &str, count: usize) -> Vec<Mail> {
        let ids = eventually(
            &format!("{count} email(s) to {address}"),
            Duration::from_secs(30),
            || async {
                let ids = self.ids_to(address).await;
                (ids.len() >= count).then_some(ids)
            },
        )
        .await;
        let mut mails = Vec::new();
        for id in ids {
            mails.push(self.message(&id).await);
        }
        mails
    }
}

/// A Mailpit started by one test, on ports of its own.
pub struct OwnMailpit {
    pub smtp_port: u16,
    pub http_port: u16,
    child: Option<Child>,
    /// While stopped, the SMTP port bound and not listening: connections are refused,
    /// and no server another test starts meanwhile can take the port (a delivery to it
    /// would succeed where this test expects a refusal).
    held: Option<tokio::net::TcpSocket>,
}

impl OwnMailpit {
    pub async fn start() -> OwnMailpit {
        let mut mailpit = OwnMailpit {
            smtp_port: free_port(),
            http_port: free_port(),
            child: None,
            held: None,
        };
        mailpit.resume().await;
        mailpit
    }

    pub fn api(&self) -> Mailpit {
        Mailpit {
            api: format!("http://127.0.0.1:{}", self.http_port),
        }
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    /// Starts (again) on the same ports and waits until the API answers.
    pub async fn resume(&mut self) {
        self.held = None;
        let binary = std::env::var("KUBE_ORG_MAILPIT_BIN")
            .expect("KUBE_ORG_MAILPIT_BIN is not set: run the tests with `make test`");
        let child = Command::new(binary)
            .arg(format!("--smtp=127.0.0.1:{}", self.smtp_port))
            .arg(format!("--listen=127.0.0.1:{}", self.http_port))
            .args([
                "--smtp-auth-accept-any",
                "--smtp-auth-allow-insecure",
                "--smtp-disable-rdns",
                "--disable-version-check",
                "--quiet",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Mailpit");
        self.child = Some(child);
        let url = format!("http://127.0.0.1:{}/api/v1/messages", self.http_port);
        eventually("own Mailpit answers", Duration::from_secs(20), || async {
            (http_get_status(&url).await == Some(200)).then_some(())
        })
        .await;
    }

    /// Stops it (its SMTP port refuses connections afterwards).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.held = tokio::net::TcpSocket::new_v4()
            .and_then(|socket| {
                socket.set_reuseaddr(true)?;
                socket.bind(([127, 0, 0, 1], self.smtp_port).into())?;
                Ok(socket)
            })
            .ok();
    }
}

impl Drop for OwnMailpit {
    fn drop(&mut self) {
        self.stop();
    }
}
