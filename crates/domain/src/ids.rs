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
prefixed_id!(/// A checkout session for a purchase made elsewhere (seed 003).
    CheckoutId, "chk");
prefixed_id!(/// A line of a checkout session.
    LineItemId, "li");
prefixed_id!(/// An owner's approval of an escalated purchase.
    ApprovalId, "apr");
prefixed_id!(/// A governance rule of an agent.
    RuleId, "rul");
prefixed_id!(/// A card or MPP payment (of an order or a credit top-up).
    PaymentId, "pay");

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
}
