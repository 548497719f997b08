//! Payments taken outside the credit ledger: a card checkout or an MPP charge, for an order or
//! for a credit top-up. At most one payment exists per order (a unique index), and an MPP
//! challenge pays at most once (another), so no retry can charge twice.

use crate::ids::{AccountId, OrderId, PaymentId};
use crate::money::Currency;
use crate::order::PaymentMethod;
use crate::timestamp::Timestamp;

/// What the money is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentPurpose {
    Order,
    TopUp,
}

impl PaymentPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::TopUp => "top_up",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Order, Self::TopUp]
            .into_iter()
            .find(|p| p.as_str() == raw)
    }
}

/// ```text
/// pending ─▶ succeeded ─▶ refunded
///    └──▶ canceled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// Waiting for the customer (an open checkout session).
    Pending,
    Succeeded,
    /// The checkout expired or the order was canceled before payment.
    Canceled,
    /// Paid back (a failed or canceled order).
    Refunded,
}

impl PaymentState {
    pub const ALL: [PaymentState; 4] = [
        Self::Pending,
        Self::Succeeded,
        Self::Canceled,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: PaymentId,
    pub account_id: Option<AccountId>,
    pub order_id: Option<OrderId>,
    pub purpose: PaymentPurpose,
    /// `card` or `mpp`.
    pub rail: PaymentMethod,
    pub amount_minor: i64,
    pub currency: Currency,
    pub status: PaymentState,
    /// The checkout session (card).
    pub session_id: Option<String>,
    /// The hosted payment page (card).
    pub checkout_url: Option<String>,
    /// The provider's payment (a Stripe PaymentIntent), once paid.
    pub payment_reference: Option<String>,
    /// The MPP challenge that paid (single use).
    pub challenge_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
