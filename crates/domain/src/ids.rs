//! Opaque, prefixed, time-ordered identifiers (`ord_0193...`). The body is a UUIDv7 in lowercase
//! hex without dashes, so ids sort by creation time and cursors can compare them as strings.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id whose body is a UUIDv7 (time-ordered).
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// A fresh id for something that happens at `at` (the injected clock's time, not
            /// the machine's), for records listed in id order such as ledger entries.
            pub fn generate_at(at: crate::timestamp::Timestamp) -> Self {
                Self(format!("{}_{}", $prefix, uuid_at(at).simple()))
            }

            /// Accepts only strings that look like ids of this type; anything else cannot name
            /// an object of this type, so callers answer `not_found`.
            pub fn parse(raw: &str) -> Option<Self> {
                let body = raw.strip_prefix(concat!($prefix, "_"))?;
                (body.len() == 32 && body.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
                    .then(|| Self(raw.to_owned()))
            }

            /// Wraps a value read back from storage, which only ever holds generated ids.
            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Ids made at injected times share one counter, so ids made within the same millisecond (or
/// when the injected clock steps back) still sort in the order they were made.
static AT_CONTEXT: std::sync::Mutex<std::panic::AssertUnwindSafe<uuid::ContextV7>> =
    std::sync::Mutex::new(std::panic::AssertUnwindSafe(uuid::ContextV7::new()));

fn uuid_at(at: crate::timestamp::Timestamp) -> uuid::Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    let timestamp = uuid::Timestamp::from_unix(&AT_CONTEXT, seconds, at.timestamp_subsec_nanos());
    uuid::Uuid::new_v7(timestamp)
}

prefixed_id!(/// An account: the unit that owns money, keys and orders.
    AccountId, "acct");
prefixed_id!(/// An API key (the id, never the secret).
    KeyId, "key");
prefixed_id!(/// An agent acting for an account.
    AgentId, "agt");
prefixed_id!(/// A price quote.
    QuoteId, "qt");
prefixed_id!(/// An order.
    OrderId, "ord");
prefixed_id!(/// A provisioned service.
    ServiceId, "svc");
prefixed_id!(/// A ledger entry.
    LedgerEntryId, "led");
prefixed_id!(/// A background job.
    JobId, "job");
prefixed_id!(/// A governance audit record.
    AuditId, "aud");
prefixed_id!(/// A checkout session for a purchase made elsewhere.
    CheckoutId, "chk");
prefixed_id!(/// A line of a checkout session.
    LineItemId, "li");
prefixed_id!(/// An owner's approval of an escalated purchase.
    ApprovalId, "apr");
prefixed_id!(/// A governance rule of an agent.
    RuleId, "rul");
prefixed_id!(/// A card or MPP payment (of an order or a credit top-up).
    PaymentId, "pay");
prefixed_id!(/// An entry of the event log.
    EventId, "evt");
prefixed_id!(/// A URL an account's events are sent to.
    WebhookEndpointId, "we");
prefixed_id!(/// One event on its way to one webhook endpoint.
    DeliveryId, "whd");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = OrderId::generate();
        let b = OrderId::generate();
        assert!(a < b, "UUIDv7 ids must be monotonic within a process");
        assert_eq!(OrderId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(
            QuoteId::parse(a.as_str()),
            None,
            "prefix must match the type"
        );
        assert_eq!(OrderId::parse("ord_../../etc"), None);
    }

    #[test]
    fn ids_made_at_injected_times_carry_those_times() {
        let earlier = chrono::DateTime::from_timestamp(1_900_000_000, 250_000_000).unwrap();
        let later = earlier + chrono::Duration::days(30);
        let first = LedgerEntryId::generate_at(earlier);
        let second = LedgerEntryId::generate_at(later);
        assert!(first < second, "ids sort by the injected time");
        let millis = |id: &LedgerEntryId| {
            let body = id.as_str().strip_prefix("led_").unwrap();
            let uuid = uuid::Uuid::parse_str(body).unwrap();
            let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
            seconds * 1000 + u64::from(nanos) / 1_000_000
        };
        assert_eq!(millis(&first), earlier.timestamp_millis() as u64);
        assert_eq!(millis(&second), later.timestamp_millis() as u64);
        assert_eq!(LedgerEntryId::parse(second.as_str()), Some(second));
    }
}
