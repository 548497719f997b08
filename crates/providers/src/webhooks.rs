//! Outgoing webhooks over HTTP, inside the SSRF boundary (docs/events.md, "Outgoing requests").
//!
//! A webhook URL is chosen by a customer, and the request is sent from inside the provider's
//! network, so by default it may only reach public addresses: the URL is checked when it is
//! registered, and every connection is checked again as it is made (the resolver refuses
//! forbidden addresses, so a host name that changes its answer between the two — DNS rebinding
//! — gains nothing). Redirects are not followed (a public URL could redirect to a private one),
//! no proxy from the environment is used (it would connect on our behalf, past the check), and
//! every attempt has a time limit. `allow_private_targets` lifts the address rule and allows
//! plain `http://`, for local setups and tests.

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use storefront_app::ports::WebhookTransport;
use storefront_domain::webhook::forbidden_address;

pub struct HttpWebhookTransport {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

impl HttpWebhookTransport {
    /// Sends with at most `timeout` per attempt; `allow_private` lifts the address rule.
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .https_only(!allow_private)
            .user_agent(concat!("Storefront-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Self {
            client,
            allow_private,
            timeout,
        })
    }

    /// The URL's form: parseable, https (or http when allowed), a host, no credentials, and an
    /// allowed address if the host is one.
    fn check_form(&self, raw: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(raw).map_err(|e| format!("it is not a valid URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            "http" => return Err("only https:// URLs are allowed".into()),
            other => return Err(format!("the scheme {other}: is not https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a URL may not carry a user name or password".into());
        }
        let host = url.host_str().ok_or("it has no host")?;
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            self.check_address(ip)?;
        }
        Ok(url)
    }

    fn check_address(&self, ip: IpAddr) -> Result<(), String> {
        match forbidden_address(ip) {
            Some(why) if !self.allow_private => Err(format!("{ip} is {why}")),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl WebhookTransport for HttpWebhookTransport {
    async fn check_url(&self, raw: &str) -> Result<(), String> {
        let url = self.check_form(raw)?;
        if self.allow_private {
            return Ok(());
        }
        // A host name: every address it has now must be allowed (connections check again).
        let host = url.host_str().unwrap_or_default();
        if host.parse::<IpAddr>().is_err() && !host.starts_with('[') {
            allowed_addresses(host, false).await?;
        }
        Ok(())
    }

    async fn post(&self, raw: &str, headers: &[(&str, String)], body: &str) -> Result<u16, String> {
        let url = self.check_form(raw)?;
        let mut request = self.client.post(url).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => {
                Err(format!("no answer within {} s", self.timeout.as_secs_f64()))
            }
            Err(e) => Err(describe(&e)),
        }
    }
}

/// The innermost cause of a failed request, which is where the resolver's refusal or the
/// operating system's "connection refused" is.
fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let cause = source.to_string();
    if e.is_connect() {
        format!("could not connect: {cause}")
    } else {
        format!("the request failed: {cause}")
    }
}

/// The addresses `host` resolves to, all of them allowed (or the reason one is not).
async fn allowed_addresses(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("the host name {host} does not resolve ({e})"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("the host name {host} has no address"));
    }
    if !allow_private {
        for a in &addresses {
            if let Some(why) = forbidden_address(a.ip()) {
                return Err(format!("{host} resolves to {}, {why}", a.ip()));
            }
        }
    }
    Ok(addresses)
}

/// Resolves host names for the client, refusing any that has a forbidden address: the check at
/// connect time.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses = allowed_addresses(name.as_str(), allow_private).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(allow_private: bool) -> HttpWebhookTransport {
        HttpWebhookTransport::new(allow_private, Duration::from_secs(2)).unwrap()
    }

    // These check the rules only: nothing here connects anywhere.
    #[test]
    fn the_form_of_a_url_is_checked_before_any_connection() {
        let strict = transport(false);
        for (url, why) in [
            ("http://hooks.example.com/x", "only https"),
            ("ftp://hooks.example.com/x", "scheme"),
            ("https://user:pw@hooks.example.com/x", "user name"),
            ("https://127.0.0.1/x", "loopback"),
            ("https://[::1]/x", "loopback"),
            ("https://169.254.169.254/latest/meta-data", "metadata"),
            ("https://10.1.2.3/x", "private"),
            ("https://[fe80::1]/x", "link-local"),
            ("https://[::ffff:192.168.0.1]/x", "private"),
            ("not a url", "not a valid URL"),
        ] {
            let err = strict.check_form(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
        assert!(strict.check_form("https://hooks.example.com/x").is_ok());
        assert!(strict.check_form("https://8.8.8.8/x").is_ok());
        let open = transport(true);
        assert!(open.check_form("http://127.0.0.1:9/x").is_ok());
        assert!(open.check_form("ftp://127.0.0.1/x").is_err());
    }
}
