//! The LXD REST API (`/1.0`, which Incus shares): over the local unix socket, or over HTTPS with a
//! client certificate the server trusts (a remote host or a cluster).
//!
//! Every answer is LXD's envelope: `{"type": "sync" | "async" | "error", "metadata", ...}`. An
//! async answer names a background operation, waited for with `/1.0/operations/{id}/wait` —
//! whose own answer is `200` even when the operation failed, so its `metadata.status` decides.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long one call (an operation wait included) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(180);

/// A failed call: LXD's status code (0 when it was never reached) and its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("LXD: {message} ({status})")]
pub struct LxdError {
    pub status: u16,
    pub message: String,
}

impl LxdError {
    fn unreachable(e: impl std::fmt::Display) -> Self {
        Self {
            status: 0,
            message: format!("cannot reach the LXD API: {e}"),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }
}

/// Where the API is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The daemon's unix socket on this host (root, or a member of its group).
    Unix(PathBuf),
    /// `https://host:8443` with a client certificate (PEM) the server trusts and, for a server
    /// whose certificate is self-signed, that certificate (PEM) to trust.
    Https {
        url: String,
        client_certificate: String,
        client_key: String,
        server_certificate: Option<String>,
    },
}

enum Transport {
    Unix(PathBuf),
    Https { base: String, http: reqwest::Client },
}

/// A request body: JSON, or a file's bytes with LXD's file headers.
pub enum Body<'a> {
    Empty,
    Json(&'a Value),
    File {
        contents: &'a [u8],
        headers: &'a [(&'a str, String)],
    },
}

pub struct LxdClient {
    transport: Transport,
    /// The LXD project every call is made in.
    project: String,
}

impl LxdClient {
    pub fn new(endpoint: &Endpoint, project: &str) -> Result<Self, String> {
        let transport = match endpoint {
            Endpoint::Unix(path) => Transport::Unix(path.clone()),
            Endpoint::Https {
                url,
                client_certificate,
                client_key,
                server_certificate,
            } => {
                let identity = reqwest::Identity::from_pem(
                    format!("{client_certificate}\n{client_key}").as_bytes(),
                )
                .map_err(|e| format!("the LXD client certificate or key is not valid PEM: {e}"))?;
                let mut builder = reqwest::Client::builder()
                    .use_rustls_tls()
                    .identity(identity)
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(CALL_TIMEOUT);
                if let Some(pem) = server_certificate {
                    let certificate = reqwest::Certificate::from_pem(pem.as_bytes())
                        .map_err(|e| format!("the LXD server certificate is not valid PEM: {e}"))?;
                    // Only that certificate: a publicly trusted one for the same name is not it.
                    builder = builder
                        .tls_built_in_root_certs(false)
                        .add_root_certificate(certificate);
                }
                Transport::Https {
                    base: url.trim_end_matches('/').to_owned(),
                    http: builder.build().map_err(|e| e.to_string())?,
                }
            }
        };
        Ok(Self {
            transport,
            project: project.to_owned(),
        })
    }

    /// `path` with the project added to its query.
    fn in_project(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}project={}", self.project)
    }

    /// One call; answers LXD's envelope of a success, or the error it carried.
    pub async fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<Value, LxdError> {
        let path = self.in_project(path);
        let (content_type, bytes, extra): (&str, Vec<u8>, &[(&str, String)]) = match body {
            Body::Empty => ("application/json", Vec::new(), &[]),
            Body::Json(v) => ("application/json", v.to_string().into_bytes(), &[]),
            // Without this content type LXD writes an empty file and still answers 200.
            Body::File { contents, headers } => {
                ("application/octet-stream", contents.to_vec(), headers)
            }
        };
        let attempt = async {
            match &self.transport {
                Transport::Unix(socket) => {
                    unix_call(socket, method, &path, content_type, bytes, extra).await
                }
                Transport::Https { base, http } => {
                    let method = reqwest::Method::from_bytes(method.as_bytes())
                        .map_err(LxdError::unreachable)?;
                    let mut request = http
                        .request(method, format!("{base}{path}"))
                        .header("content-type", content_type)
                        .body(bytes);
                    for (name, value) in extra {
                        request = request.header(*name, value);
                    }
                    let response = request.send().await.map_err(LxdError::unreachable)?;
                    let status = response.status().as_u16();
                    let body = response.bytes().await.map_err(LxdError::unreachable)?;
                    Ok((status, body.to_vec()))
                }
            }
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, attempt)
            .await
            .map_err(|_| LxdError::unreachable("timed out"))??;
        let envelope: Value = serde_json::from_slice(&body).map_err(|_| LxdError {
            status,
            message: format!("not an LXD answer: {}", String::from_utf8_lossy(&body)),
        })?;
        if envelope["type"] == "error" || status >= 400 {
            return Err(LxdError {
                status: envelope["error_code"].as_u64().map_or(status, |c| c as u16),
                message: envelope["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
            });
        }
        Ok(envelope)
    }

    /// A synchronous read: the answer's `metadata`.
    pub async fn get(&self, path: &str) -> Result<Value, LxdError> {
        Ok(self.call("GET", path, Body::Empty).await?["metadata"].take())
    }

    /// A change that LXD may run in the background: waits for its operation to finish.
    pub async fn act(&self, method: &str, path: &str, body: Body<'_>) -> Result<Value, LxdError> {
        let mut envelope = self.call(method, path, body).await?;
        if envelope["type"] != "async" {
            return Ok(envelope["metadata"].take());
        }
        let operation = envelope["operation"]
            .as_str()
            .ok_or_else(|| LxdError::unreachable("an async answer without its operation"))?
            .to_owned();
        // A long operation outlasts one wait: wait again (ten times at most) while it runs.
        let mut waits = 0;
        let done = loop {
            waits += 1;
            let state = self
                .get(&format!(
                    "{operation}/wait?timeout={}",
                    CALL_TIMEOUT.as_secs() - 5
                ))
                .await?;
            if !matches!(state["status"].as_str(), Some("Running" | "Pending")) || waits == 10 {
                break state;
            }
        };
        if done["status"] == "Success" {
            Ok(done)
        } else {
            Err(LxdError {
                status: done["status_code"].as_u64().unwrap_or(500) as u16,
                message: done["err"]
                    .as_str()
                    .unwrap_or("the operation failed")
                    .to_owned(),
            })
        }
    }
}

async fn unix_call(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, String)],
) -> Result<(u16, Vec<u8>), LxdError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| LxdError::unreachable(format!("{}: {e}", socket.display())))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(LxdError::unreachable)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "lxd")
        .header("content-type", content_type);
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(LxdError::unreachable)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(LxdError::unreachable)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(LxdError::unreachable)?
        .to_bytes();
    Ok((status, body.to_vec()))
}
