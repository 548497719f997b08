//! The credits ledger: append-only, signed amounts; an account's balance is always the sum of
//! its entries and never below zero.

use crate::ids::{AccountId, LedgerEntryId, OrderId};
use crate::timestamp::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    TopUp,
    Charge,
    Refund,
    Adjustment,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopUp => "top_up",
            Self::Charge => "charge",
            Self::Refund => "refund",
            Self::Adjustment => "adjustment",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "top_up" => Some(Self::TopUp),
            "charge" => Some(Self::Charge),
            "refund" => Some(Self::Refund),
            "adjustment" => Some(Self::Adjustment),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerEntry {
    pub id: LedgerEntryId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub kind: LedgerKind,
    /// Signed: positive credits the account, negative debits it.
    pub amount_minor: i64,
    pub balance_after_minor: i64,
    pub order_id: Option<OrderId>,
    pub description: String,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// A ledger movement to apply atomically with whatever state change caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerMovement {
    pub account_id: AccountId,
    pub kind: LedgerKind,
    pub amount_minor: i64,
    pub order_id: Option<OrderId>,
    pub description: String,
}
