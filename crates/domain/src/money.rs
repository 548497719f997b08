//! Money is an integer number of minor units plus a lowercase ISO 4217 currency. Never floats;
//! every arithmetic step is checked so that an absurd input is an error, not a wrap-around.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A lowercase three-letter ISO 4217 code (`usd`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_lowercase()))
            .then(|| Self(raw.to_owned()))
    }

    /// A code from a request: any case, but it must name an ISO 4217 currency.
    pub fn parse_iso(raw: &str) -> Option<Self> {
        let code = raw.trim();
        iso_currency::Currency::from_code(&code.to_ascii_uppercase())
            .and_then(|_| Self::parse(&code.to_ascii_lowercase()))
    }

    pub fn usd() -> Self {
        Self("usd".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
            .ok_or_else(|| format!("'{value}' is not a lowercase ISO 4217 currency code"))
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Formats minor units for people: `1234` → `12.34 USD` (two decimals; every currency the
/// built-in catalog uses has two).
pub fn display_minor(amount_minor: i64, currency: &Currency) -> String {
    display_minor_in(amount_minor, currency.as_str())
}

/// [`display_minor`] for a currency code carried as text (views hold it as a string).
pub fn display_minor_in(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        abs / 100,
        abs % 100,
        currency.to_uppercase()
    )
}

/// An amount as people write it in a sentence: `$49.99`, `€5.00`, `£1.20`, and for other
/// currencies `49.99 CHF` (governance reasons read "Transaction amount $49.99 is within limit of
/// $500.00"; docs/api.md, "Rules").
pub fn display_amount(amount_minor: i64, currency: &str) -> String {
    let symbol = match currency.to_ascii_lowercase().as_str() {
        "usd" => Some("$"),
        "eur" => Some("€"),
        "gbp" => Some("£"),
        _ => None,
    };
    match symbol {
        Some(symbol) => {
            let sign = if amount_minor < 0 { "-" } else { "" };
            let abs = amount_minor.unsigned_abs();
            format!("{sign}{symbol}{}.{:02}", abs / 100, abs % 100)
        }
        None => display_minor_in(amount_minor, currency),
    }
}

/// The largest single amount the storefront accepts anywhere (one billion major units). Keeps
/// every sum of a bounded number of amounts far from `i64` overflow.
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;
