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

/// An amount of money as people read it: integer minor units of a currency. The one place
/// amounts are formatted (every currency the built-in catalog uses has two decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money<'a> {
    pub minor: i64,
    /// The ISO 4217 code, any case.
    pub currency: &'a str,
}

impl<'a> Money<'a> {
    pub fn new(minor: i64, currency: &'a str) -> Self {
        Self { minor, currency }
    }

    /// `-12.34` for -1234: the sign, the major units and two decimals.
    fn number(&self) -> String {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// The amount as a sentence writes it: `$49.99`, `€5.00`, `£1.20`, and for other currencies
    /// `49.99 CHF` (governance reasons read "Transaction amount $49.99 is within limit of
    /// $500.00"; docs/api.md, "Rules").
    pub fn in_prose(&self) -> String {
        let symbol = match self.currency.to_ascii_lowercase().as_str() {
            "usd" => "$",
            "eur" => "€",
            "gbp" => "£",
            _ => return self.to_string(),
        };
        let number = self.number();
        match number.strip_prefix('-') {
            Some(positive) => format!("-{symbol}{positive}"),
            None => format!("{symbol}{number}"),
        }
    }

    /// Minor units from an amount in major units as a client sent it (`19.99`): finite, at most
    /// two decimals, and within [`MAX_AMOUNT_MINOR`] either way.
    pub fn minor_from_major(major: f64) -> Option<i64> {
        let minor = major * 100.0;
        let whole = minor.round();
        let exact = minor.is_finite() && (minor - whole).abs() <= 1e-6;
        // The bound is checked on the float, before the cast could saturate.
        (exact && whole.abs() <= MAX_AMOUNT_MINOR as f64).then_some(whole as i64)
    }
}

/// `12.34 USD`.
impl fmt::Display for Money<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.currency.to_uppercase())
    }
}

/// Formats minor units for people: `1234` → `12.34 USD`.
pub fn display_minor(amount_minor: i64, currency: &Currency) -> String {
    Money::new(amount_minor, currency.as_str()).to_string()
}

/// [`display_minor`] for a currency code carried as text (views hold it as a string).
pub fn display_minor_in(amount_minor: i64, currency: &str) -> String {
    Money::new(amount_minor, currency).to_string()
}

/// [`Money::in_prose`] of an amount.
pub fn display_amount(amount_minor: i64, currency: &str) -> String {
    Money::new(amount_minor, currency).in_prose()
}

/// The largest single amount the storefront accepts anywhere (one billion major units). Keeps
/// every sum of a bounded number of amounts far from `i64` overflow.
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_their_sign_below_one_unit() {
        assert_eq!(Money::new(-50, "usd").to_string(), "-0.50 USD");
        assert_eq!(Money::new(-50, "usd").in_prose(), "-$0.50");
        assert_eq!(Money::new(123_456, "eur").in_prose(), "€1234.56");
        assert_eq!(Money::new(7, "chf").in_prose(), "0.07 CHF");
    }

    #[test]
    fn major_units_become_minor_units_only_when_exact_and_bounded() {
        assert_eq!(Money::minor_from_major(19.99), Some(1999));
        assert_eq!(Money::minor_from_major(-0.5), Some(-50));
        assert_eq!(Money::minor_from_major(0.001), None);
        assert_eq!(Money::minor_from_major(f64::NAN), None);
        assert_eq!(Money::minor_from_major(f64::INFINITY), None);
        assert_eq!(Money::minor_from_major(1e12), None);
        assert_eq!(
            Money::minor_from_major(1e9),
            Some(MAX_AMOUNT_MINOR),
            "one billion major units is the largest amount"
        );
    }
}
