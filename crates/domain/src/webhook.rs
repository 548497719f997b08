//! Webhook endpoints and their deliveries: what an account asked to be told, where, and how each
//! attempt to tell it went. Also the two rules outgoing requests live by: which addresses they
//! may reach (the SSRF boundary) and when a failed delivery is tried again.

use crate::event::{Event, EventType};
use crate::ids::{AccountId, AgentId, DeliveryId, EventId, WebhookEndpointId};
use crate::timestamp::Timestamp;
use chrono::Duration;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where an account's events are sent. The signing secrets are stored sealed (encrypted) and
/// never leave the store except to sign.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub account_id: AccountId,
    /// Set when an agent key created the endpoint: it then receives that agent's events only.
    pub agent_id: Option<AgentId>,
    pub url: String,
    /// The event types sent here; `["*"]` is every type.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the endpoint was disabled, when it was disabled by the storefront (410, 3 days of
    /// failures) rather than by its owner.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (cleared by a success).
    pub failing_since: Option<Timestamp>,
    /// The current signing secret, sealed.
    pub secret_sealed: String,
    /// The secret before the last rotation, sealed, and until when it still signs.
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// All event types an endpoint may subscribe to.
pub const ALL_EVENTS: &str = "*";

impl WebhookEndpoint {
    /// Whether an event of `kind`, of `agent` (if an agent acted), is sent here.
    pub fn wants(&self, kind: EventType, agent: Option<&AgentId>) -> bool {
        let of_mine = match &self.agent_id {
            None => true,
            Some(own) => agent == Some(own),
        };
        of_mine
            && self
                .events
                .iter()
                .any(|e| e == ALL_EVENTS || e == kind.as_str())
    }

    /// The secrets a delivery at `now` is signed with: the current one, and the previous one
    /// while it is still honoured after a rotation.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret_sealed.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret_sealed, self.previous_secret_until)
        {
            if now < until {
                secrets.push(previous.as_str());
            }
        }
        secrets
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in one).
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Out of attempts, or the endpoint answered 410 Gone.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One event on its way to one endpoint. The body is fixed when the delivery is created, so
/// every attempt sends the same bytes under the same `webhook-id` (receivers deduplicate by it).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: DeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub account_id: AccountId,
    /// The `webhook-id`: the event's id (a `ping` has one of its own).
    pub event_id: EventId,
    pub event_type: String,
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts started so far (one that died with its process counts).
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookDelivery {
    /// The delivery of `event` to `endpoint`, due at once.
    pub fn of_event(endpoint: &WebhookEndpoint, event: &Event) -> Self {
        Self::new(
            endpoint,
            event.id.clone(),
            event.kind.as_str(),
            webhook_body(
                &event.id,
                event.kind.as_str(),
                event.created_at,
                &event.data,
            ),
            event.created_at,
        )
    }

    /// A `ping` to `endpoint` (its test button): an event of its own that the log does not keep.
    pub fn ping(endpoint: &WebhookEndpoint, now: Timestamp) -> Self {
        let id = EventId::generate_at(now);
        let data = serde_json::json!({"webhook_endpoint_id": endpoint.id, "url": endpoint.url});
        let body = webhook_body(&id, PING, now, &data);
        Self::new(endpoint, id, PING, body, now)
    }

    fn new(
        endpoint: &WebhookEndpoint,
        event_id: EventId,
        event_type: &str,
        body: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id: DeliveryId::generate_at(now),
            endpoint_id: endpoint.id.clone(),
            account_id: endpoint.account_id.clone(),
            event_id,
            event_type: event_type.to_owned(),
            body,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            last_attempt_at: None,
            last_status_code: None,
            last_error: None,
            last_duration_ms: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The type of the test event an endpoint's owner can send it.
pub const PING: &str = "ping";

/// The body of a webhook (Standard Webhooks' payload structure: `type`, `timestamp` of the event,
/// `data`; plus the event's `id`, the same as the `webhook-id` header).
pub fn webhook_body(id: &EventId, kind: &str, at: Timestamp, data: &Value) -> String {
    serde_json::json!({
        "id": id,
        "type": kind,
        "timestamp": crate::timestamp::format(&at),
        "data": data,
    })
    .to_string()
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The answer's status code, if an answer came.
    pub status_code: Option<u16>,
    /// Why the attempt failed, if it did.
    pub error: Option<String>,
    pub duration_ms: i64,
    pub at: Timestamp,
}

impl AttemptResult {
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }

    /// 410 Gone: the receiver asks never to be called again.
    pub fn gone(&self) -> bool {
        self.status_code == Some(410)
    }
}

/// How long after a failed attempt the next one starts: quickly at first, then hours apart (5 s,
/// 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, 24 h: about four days in all, so that an
/// endpoint that fails throughout is still being tried when its three days of failures disable
/// it). `None` once `attempts` have all been used. `jitter` in [-1, 1] spreads retries by up
/// to ±10% so that a receiver coming back is not hit by every delivery in the same second.
pub fn retry_delay(attempts: i64, jitter: f64) -> Option<Duration> {
    const SCHEDULE_SECONDS: [i64; 10] = [
        5,
        5 * 60,
        30 * 60,
        2 * 3600,
        5 * 3600,
        10 * 3600,
        14 * 3600,
        20 * 3600,
        24 * 3600,
        24 * 3600,
    ];
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    let base = *SCHEDULE_SECONDS.get(index)? as f64;
    let spread = base * 0.1 * jitter.clamp(-1.0, 1.0);
    Some(Duration::milliseconds(((base + spread) * 1000.0) as i64))
}

/// The most attempts a delivery gets (the first and one per retry delay).
pub const MAX_ATTEMPTS: i64 = 11;

/// An endpoint whose every attempt has failed for this long is disabled.
pub fn failing_limit() -> Duration {
    Duration::days(3)
}

/// Why an outgoing request may not go to `ip`, or `None` if it may: loopback, private,
/// link-local (where cloud metadata services live), carrier-grade NAT, multicast, reserved and
/// documentation ranges, and IPv6 forms that embed such an IPv4 address.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if is_metadata_v4(ip) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a carrier-grade NAT address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast or reserved address")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (18..20).contains(&b)) {
        Some("a reserved address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else {
        None
    }
}

/// The instance metadata services of the large clouds that live outside link-local space
/// (169.254.169.254 is link-local and refused as such).
fn is_metadata_v4(ip: Ipv4Addr) -> bool {
    ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4
    // (2002::/16) addresses reach the IPv4 address inside them.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return forbidden_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return forbidden_v4(embedded_v4(segments[1], segments[2]));
    }
    if segments == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254] {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("a documentation address")
    } else {
        None
    }
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ip: &str) -> Option<&'static str> {
        forbidden_address(ip.parse().unwrap())
    }

    #[test]
    fn addresses_inside_the_machine_or_the_network_are_refused() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "metadata"),
            ("169.254.10.1", "link-local"),
            ("100.100.100.200", "metadata"),
            ("100.64.0.1", "carrier-grade"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("198.18.0.1", "reserved"),
            ("192.0.0.8", "reserved"),
            ("192.0.2.1", "documentation"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "metadata"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("2002:7f00:1::", "loopback"),
            ("2001:db8::1", "documentation"),
        ] {
            let reason = rule(ip).unwrap_or_else(|| panic!("{ip} must be refused"));
            assert!(reason.contains(why), "{ip}: {reason}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        // Parsed and judged only; nothing here opens a connection.
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "193.0.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(rule(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn retries_outlast_three_days_of_failures_then_stop() {
        let total = |jitter: f64| -> i64 {
            (1..MAX_ATTEMPTS)
                .map(|n| retry_delay(n, jitter).unwrap().num_seconds())
                .sum()
        };
        // Even with every delay at its shortest, the last attempt comes after three days, when
        // a failure disables the endpoint.
        assert!(
            total(-1.0) > failing_limit().num_seconds(),
            "{}",
            total(-1.0)
        );
        assert!(
            total(1.0) < Duration::days(5).num_seconds(),
            "{}",
            total(1.0)
        );
        assert_eq!(retry_delay(MAX_ATTEMPTS, 0.0), None);
        assert_eq!(retry_delay(0, 0.0), None);
        let late = retry_delay(1, 1.0).unwrap();
        let early = retry_delay(1, -1.0).unwrap();
        assert_eq!(
            (early.num_milliseconds(), late.num_milliseconds()),
            (4500, 5500)
        );
    }

    #[test]
    fn an_agents_endpoint_hears_only_its_agents_events() {
        let now = chrono::Utc::now();
        let agent = AgentId::generate();
        let endpoint = WebhookEndpoint {
            id: WebhookEndpointId::generate(),
            account_id: AccountId::generate(),
            agent_id: Some(agent.clone()),
            url: "https://hooks.example.com/x".into(),
            events: vec!["order.paid".into()],
            description: None,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            secret_sealed: "s".into(),
            previous_secret_sealed: Some("p".into()),
            previous_secret_until: Some(now + Duration::hours(24)),
            created_at: now,
            updated_at: now,
        };
        assert!(endpoint.wants(EventType::OrderPaid, Some(&agent)));
        assert!(!endpoint.wants(EventType::OrderPaid, None));
        assert!(!endpoint.wants(EventType::OrderCreated, Some(&agent)));
        assert_eq!(endpoint.signing_secrets(now), ["s", "p"]);
        assert_eq!(endpoint.signing_secrets(now + Duration::hours(25)), ["s"]);
    }
}
