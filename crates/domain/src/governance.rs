//! The owner's rules over an agent's spending (docs/api.md, "Rules"), as a pure function:
//! rules + a transaction + what the agent already spent → allow, deny or escalate.
//!
//! Evaluation is deterministic and independent of the order in which rules were created:
//! enabled rules are sorted by kind in a fixed order (merchant, category, product,
//! per_transaction_cap, budget, rate, escalate_above), then by their parameters and name; every
//! one is evaluated and counted; a deny wins over an escalate, which wins over allow; the first
//! triggered rule of the winning action is reported.

use crate::error::{DomainError, ErrorCode};
use crate::money::MAX_AMOUNT_MINOR;
use crate::timestamp::Timestamp;
use chrono::{Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a triggered rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Deny,
    Escalate,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Escalate => "escalate",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Deny, Self::Escalate]
            .into_iter()
            .find(|a| a.as_str() == raw)
    }
}

/// A budget's period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// When the period containing `now` began: midnight, Monday midnight, the 1st at midnight.
    pub fn start(self, now: Timestamp) -> Timestamp {
        let midnight = Utc
            .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
            .single()
            .unwrap_or(now);
        match self {
            Self::Day => midnight,
            Self::Week => {
                midnight - Duration::days(i64::from(now.weekday().num_days_from_monday()))
            }
            Self::Month => Utc
                .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(midnight),
        }
    }
}

/// The kinds of rule and their parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum RuleKind {
    /// Merchants: `trusted_only` limits spending to the trusted stores; blocked stores always
    /// trigger.
    Merchant {
        trusted_only: bool,
    },
    Category {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allow: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny: Option<Vec<String>>,
    },
    Product {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allow: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny: Option<Vec<String>>,
    },
    PerTransactionCap {
        max_minor: i64,
    },
    Budget {
        period: Period,
        max_minor: i64,
    },
    Rate {
        max_transactions: u32,
        per_seconds: u32,
    },
    EscalateAbove {
        amount_minor: i64,
        /// Who approves, numbered as the governance API does (docs/api.md, "Approvals"): 1 is
        /// the account's owner; higher tiers are further up an approval chain.
        tier: u8,
        timeout_seconds: u32,
    },
}

impl RuleKind {
    pub const NAMES: [&'static str; 7] = [
        "merchant",
        "category",
        "product",
        "per_transaction_cap",
        "budget",
        "rate",
        "escalate_above",
    ];

    /// The kinds whose evaluation needs the agent's recent spending (its orders of the last
    /// month): an agent without an enabled rule of these kinds is checked without reading them.
    /// The store asks for spending by these names, in the same read as the rules.
    pub const READING_SPENDING: [&'static str; 2] = ["budget", "rate"];

    /// The fixed evaluation order.
    fn rank(&self) -> usize {
        match self {
            Self::Merchant { .. } => 0,
            Self::Category { .. } => 1,
            Self::Product { .. } => 2,
            Self::PerTransactionCap { .. } => 3,
            Self::Budget { .. } => 4,
            Self::Rate { .. } => 5,
            Self::EscalateAbove { .. } => 6,
        }
    }

    pub fn name(&self) -> &'static str {
        Self::NAMES[self.rank()]
    }

    /// The parameters as JSON (`params` on the wire).
    pub fn params(&self) -> Value {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("params").cloned())
            .unwrap_or(Value::Object(Map::new()))
    }

    /// Parses `kind` and `params` from a request, naming the field at fault.
    pub fn parse(kind: &str, params: &Value) -> Result<Self, DomainError> {
        if !Self::NAMES.contains(&kind) {
            return Err(DomainError::validation(
                "kind",
                format!("'{kind}' is not a rule kind."),
                format!("Use one of: {}.", Self::NAMES.join(", ")),
            ));
        }
        let wrapped = serde_json::json!({ "kind": kind, "params": params });
        let parsed: Self = serde_json::from_value(wrapped).map_err(|e| {
            DomainError::validation(
                "params",
                format!("The params of a {kind} rule are invalid: {e}."),
                Self::example(kind),
            )
        })?;
        parsed.check()?;
        Ok(parsed)
    }

    fn example(kind: &str) -> String {
        let example = match kind {
            "merchant" => r#"{"trusted_only": true}"#,
            "category" => r#"{"allow": ["compute"]} or {"deny": ["gambling"]}"#,
            "product" => r#"{"allow": ["bare-linux-machine"]} or {"deny": ["gpu-h100-machine"]}"#,
            "per_transaction_cap" => r#"{"max_minor": 5000}"#,
            "budget" => r#"{"period": "day", "max_minor": 10000}"#,
            "rate" => r#"{"max_transactions": 10, "per_seconds": 3600}"#,
            _ => r#"{"amount_minor": 2000, "tier": 1, "timeout_seconds": 3600}"#,
        };
        format!("Send params like {example}.")
    }

    /// Parameters that cannot mean anything are refused rather than silently ignored.
    fn check(&self) -> Result<(), DomainError> {
        let amount = |param: &str, v: i64| {
            if (1..=MAX_AMOUNT_MINOR).contains(&v) {
                Ok(())
            } else {
                Err(DomainError::validation(
                    format!("params.{param}"),
                    format!("{param} must be a whole number of minor units from 1 to {MAX_AMOUNT_MINOR}."),
                    "Amounts are integers in minor units, like 5000 for 50.00.",
                ))
            }
        };
        let lists = |allow: &Option<Vec<String>>, deny: &Option<Vec<String>>| match (allow, deny) {
            (None, None) => Err(DomainError::validation(
                "params",
                "The rule needs an allow list, a deny list, or both.",
                "Send {\"allow\": [...]} or {\"deny\": [...]}.",
            )),
            (Some(a), Some(d)) if a.iter().any(|x| d.contains(x)) => Err(DomainError::validation(
                "params.deny",
                "The same value is both allowed and denied.",
                "Remove it from one of the lists.",
            )),
            _ => {
                let all = allow.iter().chain(deny.iter()).flatten();
                let bad = all.clone().any(|v| v.trim().is_empty() || v.len() > 200);
                if bad || all.count() > 1000 {
                    Err(DomainError::validation(
                        "params",
                        "List entries must be 1-200 characters, at most 1000 in all.",
                        "Send short names like \"compute\".",
                    ))
                } else {
                    Ok(())
                }
            }
        };
        match self {
            Self::Merchant { .. } => Ok(()),
            Self::Category { allow, deny } | Self::Product { allow, deny } => lists(allow, deny),
            Self::PerTransactionCap { max_minor } | Self::Budget { max_minor, .. } => {
                amount("max_minor", *max_minor)
            }
            Self::Rate {
                max_transactions,
                per_seconds,
            } => {
                if *max_transactions == 0 || *per_seconds == 0 || *per_seconds > 31 * 86_400 {
                    Err(DomainError::validation(
                        "params",
                        "max_transactions must be at least 1 and per_seconds from 1 to 2678400 (31 days).",
                        "Send {\"max_transactions\": 10, \"per_seconds\": 3600}.",
                    ))
                } else {
                    Ok(())
                }
            }
            Self::EscalateAbove {
                amount_minor,
                tier,
                timeout_seconds,
            } => {
                amount("amount_minor", *amount_minor)?;
                if !(1..=MAX_TIER).contains(tier) {
                    return Err(DomainError::validation(
                        "params.tier",
                        format!("tier must be a whole number from 1 to {MAX_TIER}."),
                        "Use 1 for the account's owner.",
                    ));
                }
                if !(60..=7 * 86_400).contains(timeout_seconds) {
                    return Err(DomainError::validation(
                        "params.timeout_seconds",
                        "timeout_seconds must be from 60 to 604800 (a week).",
                        "Give the approver time, like 3600.",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether the rule objects to this transaction, and why.
    fn triggers(&self, tx: &Transaction, ctx: &Context) -> Option<String> {
        let listed = |allow: &Option<Vec<String>>,
                      deny: &Option<Vec<String>>,
                      value: Option<&str>,
                      what: &str| {
            let value = value.unwrap_or("");
            if deny.as_ref().is_some_and(|d| d.iter().any(|x| x == value)) {
                return Some(format!("{what} '{value}' is denied"));
            }
            if allow
                .as_ref()
                .is_some_and(|a| !a.iter().any(|x| x == value))
            {
                return Some(format!("{what} '{value}' is not in the allowed list"));
            }
            None
        };
        match self {
            Self::Merchant { trusted_only } => {
                let domain = tx.merchant_domain.as_deref().unwrap_or("");
                if ctx.blocked_stores.iter().any(|d| d == domain) {
                    Some(format!("merchant '{domain}' is blocked"))
                } else if *trusted_only && !ctx.trusted_stores.iter().any(|d| d == domain) {
                    Some(format!("merchant '{domain}' is not a trusted store"))
                } else {
                    None
                }
            }
            Self::Category { allow, deny } => {
                listed(allow, deny, tx.category.as_deref(), "category")
            }
            Self::Product { allow, deny } => {
                listed(allow, deny, tx.product_id.as_deref(), "product")
            }
            Self::PerTransactionCap { max_minor } => (tx.amount_minor > *max_minor).then(|| {
                format!(
                    "Transaction amount {} exceeds the per-transaction limit of {}",
                    tx.money(tx.amount_minor),
                    tx.money(*max_minor)
                )
            }),
            Self::Budget { period, max_minor } => {
                let spent = ctx.spent_minor(*period);
                (spent.saturating_add(tx.amount_minor) > *max_minor).then(|| {
                    format!(
                        "Transaction amount {} would bring the {} spend to {}, over the budget of {}",
                        tx.money(tx.amount_minor),
                        match period {
                            Period::Day => "day's",
                            Period::Week => "week's",
                            Period::Month => "month's",
                        },
                        tx.money(spent.saturating_add(tx.amount_minor)),
                        tx.money(*max_minor)
                    )
                })
            }
            Self::Rate {
                max_transactions,
                per_seconds,
            } => {
                let since = ctx.now - Duration::seconds(i64::from(*per_seconds));
                let recent = ctx
                    .recent_transactions
                    .iter()
                    .filter(|t| **t > since)
                    .count();
                (recent >= *max_transactions as usize).then(|| {
                    format!("{recent} transactions in the last {per_seconds} seconds (limit {max_transactions})")
                })
            }
            Self::EscalateAbove { amount_minor, .. } => {
                (tx.amount_minor > *amount_minor).then(|| {
                    format!(
                        "Transaction amount {} is above {}, which needs approval",
                        tx.money(tx.amount_minor),
                        tx.money(*amount_minor)
                    )
                })
            }
        }
    }
}

/// A rule as the owner set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// `SF-001` style display code.
    pub code: String,
    pub name: String,
    pub enabled: bool,
    pub action: RuleAction,
    pub kind: RuleKind,
}

/// What an agent is about to spend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    pub amount_minor: i64,
    pub currency: String,
    pub merchant_name: Option<String>,
    pub merchant_domain: Option<String>,
    pub category: Option<String>,
    pub product_id: Option<String>,
}

impl Transaction {
    /// An amount in this transaction's currency, as a reason states it (`$49.99`).
    fn money(&self, amount_minor: i64) -> String {
        crate::money::display_amount(amount_minor, &self.currency)
    }
}

/// What the engine needs to know besides the rules: the agent's spend (completed and pending,
/// all rails) since the start of each period, its recent transactions and its store lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub now: Timestamp,
    pub spent_day_minor: i64,
    pub spent_week_minor: i64,
    pub spent_month_minor: i64,
    pub recent_transactions: Vec<Timestamp>,
    pub trusted_stores: Vec<String>,
    pub blocked_stores: Vec<String>,
}

impl Context {
    fn spent_minor(&self, period: Period) -> i64 {
        match period {
            Period::Day => self.spent_day_minor,
            Period::Week => self.spent_week_minor,
            Period::Month => self.spent_month_minor,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
    Escalate,
}

/// The decision, reported as the governance API reports it (docs/api.md, "Rules").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub result: Verdict,
    /// The first triggered rule of the winning action.
    pub rule: Option<Rule>,
    pub reason: String,
    /// For escalations: who approves and how long they have.
    pub approval: Option<(u8, u32)>,
    pub evaluated_rules: usize,
}

impl Decision {
    /// The error a denied storefront order answers with.
    pub fn denial(&self) -> Option<DomainError> {
        if self.result != Verdict::Deny {
            return None;
        }
        let rule = self.rule.as_ref()?;
        let code = match rule.kind {
            RuleKind::PerTransactionCap { .. } | RuleKind::Budget { .. } => {
                ErrorCode::SpendingCapExceeded
            }
            _ => ErrorCode::RulesDenied,
        };
        Some(DomainError::new(
            code,
            format!(
                "Rule {} ({}) denied this: {}.",
                rule.code, rule.name, self.reason
            ),
            "Ask the account owner to change the agent's rules, or spend less.",
        ))
    }
}

/// Approval defaults for an escalating rule that names none (every rule but escalate_above):
/// the owner.
pub const DEFAULT_TIER: u8 = 1;
/// The highest approval tier a rule may name.
pub const MAX_TIER: u8 = 9;
const DEFAULT_TIMEOUT_SECONDS: u32 = 3600;

/// Evaluates every enabled rule against the transaction.
pub fn evaluate(rules: &[Rule], tx: &Transaction, ctx: &Context) -> Decision {
    let mut enabled: Vec<&Rule> = rules.iter().filter(|r| r.enabled).collect();
    enabled.sort_by(|a, b| {
        (
            a.kind.rank(),
            a.action,
            a.kind.params().to_string(),
            &a.name,
            &a.id,
        )
            .cmp(&(
                b.kind.rank(),
                b.action,
                b.kind.params().to_string(),
                &b.name,
                &b.id,
            ))
    });
    let triggered: Vec<(&Rule, String)> = enabled
        .iter()
        .filter_map(|r| r.kind.triggers(tx, ctx).map(|why| (*r, why)))
        .collect();
    let first = |action: RuleAction| triggered.iter().find(|(r, _)| r.action == action);
    let (result, hit) = match (first(RuleAction::Deny), first(RuleAction::Escalate)) {
        (Some(hit), _) => (Verdict::Deny, Some(hit)),
        (None, Some(hit)) => (Verdict::Escalate, Some(hit)),
        (None, None) => (Verdict::Allow, None),
    };
    let approval = hit
        .filter(|_| result == Verdict::Escalate)
        .map(|(rule, _)| match &rule.kind {
            RuleKind::EscalateAbove {
                tier,
                timeout_seconds,
                ..
            } => (*tier, *timeout_seconds),
            _ => (DEFAULT_TIER, DEFAULT_TIMEOUT_SECONDS),
        });
    Decision {
        result,
        reason: hit
            .map(|(_, why)| why.clone())
            .unwrap_or_else(|| allowed_reason(&enabled, tx)),
        rule: hit.map(|(r, _)| (*r).clone()),
        approval,
        evaluated_rules: enabled.len(),
    }
}

/// Why nothing objected, in the governance API's words where an amount limit was checked
/// ("Transaction amount $49.99 is within limit of $500.00", naming the tightest limit).
fn allowed_reason(enabled: &[&Rule], tx: &Transaction) -> String {
    let tightest = enabled
        .iter()
        .filter_map(|r| match r.kind {
            RuleKind::PerTransactionCap { max_minor } => Some(max_minor),
            _ => None,
        })
        .min();
    match tightest {
        Some(limit) => format!(
            "Transaction amount {} is within limit of {}",
            tx.money(tx.amount_minor),
            tx.money(limit)
        ),
        None => "No rule objects to this transaction".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(id: &str, action: RuleAction, kind: RuleKind) -> Rule {
        Rule {
            id: id.into(),
            code: format!("SF-{id}"),
            name: format!("rule {id}"),
            enabled: true,
            action,
            kind,
        }
    }

    fn ctx() -> Context {
        Context {
            now: Utc.with_ymd_and_hms(2026, 11, 18, 15, 0, 0).unwrap(),
            spent_day_minor: 0,
            spent_week_minor: 0,
            spent_month_minor: 0,
            recent_transactions: vec![],
            trusted_stores: vec!["trusted.example".into()],
            blocked_stores: vec!["blocked.example".into()],
        }
    }

    fn tx(amount_minor: i64) -> Transaction {
        Transaction {
            amount_minor,
            currency: "usd".into(),
            merchant_domain: Some("shop.example".into()),
            category: Some("compute".into()),
            product_id: Some("bare-linux-machine".into()),
            ..Transaction::default()
        }
    }

    #[test]
    fn reasons_state_amounts_as_money_the_way_seed_003_does() {
        let cap = rule(
            "1",
            RuleAction::Deny,
            RuleKind::PerTransactionCap { max_minor: 50_000 },
        );
        let allowed = evaluate(std::slice::from_ref(&cap), &tx(4_999), &ctx());
        assert_eq!(
            allowed.reason,
            "Transaction amount $49.99 is within limit of $500.00"
        );
        let denied = evaluate(&[cap], &tx(50_001), &ctx());
        assert_eq!(
            denied.reason,
            "Transaction amount $500.01 exceeds the per-transaction limit of $500.00"
        );
        let above = rule(
            "2",
            RuleAction::Escalate,
            RuleKind::EscalateAbove {
                amount_minor: 3_000,
                tier: 1,
                timeout_seconds: 300,
            },
        );
        let euros = Transaction {
            currency: "eur".into(),
            ..tx(4_999)
        };
        assert_eq!(
            evaluate(&[above], &euros, &ctx()).reason,
            "Transaction amount €49.99 is above €30.00, which needs approval"
        );
    }

    #[test]
    fn every_kind_allows_denies_and_escalates() {
        use RuleAction::*;
        let mut spent = ctx();
        spent.spent_day_minor = 900;
        spent.recent_transactions = vec![spent.now - Duration::seconds(10); 3];
        let cases: Vec<(RuleKind, Transaction, Transaction, Context)> = vec![
            (
                RuleKind::PerTransactionCap { max_minor: 500 },
                tx(500),
                tx(501),
                ctx(),
            ),
            (
                RuleKind::Budget {
                    period: Period::Day,
                    max_minor: 1000,
                },
                tx(100),
                tx(101),
                spent.clone(),
            ),
            (
                RuleKind::Category {
                    allow: Some(vec!["compute".into()]),
                    deny: None,
                },
                tx(1),
                Transaction {
                    category: Some("gambling".into()),
                    ..tx(1)
                },
                ctx(),
            ),
            (
                RuleKind::Product {
                    allow: None,
                    deny: Some(vec!["gpu".into()]),
                },
                tx(1),
                Transaction {
                    product_id: Some("gpu".into()),
                    ..tx(1)
                },
                ctx(),
            ),
            (
                RuleKind::Merchant { trusted_only: true },
                Transaction {
                    merchant_domain: Some("trusted.example".into()),
                    ..tx(1)
                },
                tx(1),
                ctx(),
            ),
            (
                RuleKind::Rate {
                    max_transactions: 4,
                    per_seconds: 60,
                },
                tx(1),
                tx(1),
                spent.clone(),
            ),
            (
                RuleKind::EscalateAbove {
                    amount_minor: 100,
                    tier: 1,
                    timeout_seconds: 600,
                },
                tx(100),
                tx(101),
                ctx(),
            ),
        ];
        for (kind, ok_tx, bad_tx, context) in cases {
            let rate = matches!(kind, RuleKind::Rate { .. });
            for action in [Deny, Escalate] {
                let rules = [rule("001", action, kind.clone())];
                if !rate {
                    let allowed = evaluate(&rules, &ok_tx, &context);
                    assert_eq!(allowed.result, Verdict::Allow, "{kind:?}");
                    assert_eq!(allowed.evaluated_rules, 1);
                }
                // Rate: a fourth transaction in the window is allowed, a fifth is not.
                let mut context = context.clone();
                if rate {
                    assert_eq!(evaluate(&rules, &bad_tx, &context).result, Verdict::Allow);
                    context.recent_transactions.push(context.now);
                }
                let decided = evaluate(&rules, &bad_tx, &context);
                let expected = if action == Deny {
                    Verdict::Deny
                } else {
                    Verdict::Escalate
                };
                assert_eq!(decided.result, expected, "{kind:?} {action:?}");
                assert_eq!(decided.rule.as_ref().unwrap().id, "001");
                assert!(!decided.reason.is_empty());
                assert_eq!(decided.approval.is_some(), action == Escalate);
            }
        }
    }

    #[test]
    fn blocked_stores_trigger_even_without_trusted_only() {
        let rules = [rule(
            "1",
            RuleAction::Deny,
            RuleKind::Merchant {
                trusted_only: false,
            },
        )];
        let t = Transaction {
            merchant_domain: Some("blocked.example".into()),
            ..tx(1)
        };
        assert_eq!(evaluate(&rules, &t, &ctx()).result, Verdict::Deny);
        assert_eq!(evaluate(&rules, &tx(1), &ctx()).result, Verdict::Allow);
    }

    #[test]
    fn deny_wins_over_escalate_and_disabled_rules_do_not_count() {
        let mut off = rule(
            "3",
            RuleAction::Deny,
            RuleKind::PerTransactionCap { max_minor: 1 },
        );
        off.enabled = false;
        let rules = [
            rule(
                "1",
                RuleAction::Escalate,
                RuleKind::PerTransactionCap { max_minor: 10 },
            ),
            rule(
                "2",
                RuleAction::Deny,
                RuleKind::Budget {
                    period: Period::Month,
                    max_minor: 50,
                },
            ),
            off,
        ];
        let d = evaluate(&rules, &tx(60), &ctx());
        assert_eq!(d.result, Verdict::Deny);
        assert_eq!(d.rule.unwrap().id, "2");
        assert_eq!(d.evaluated_rules, 2);
        let d = evaluate(&rules, &tx(20), &ctx());
        assert_eq!(d.result, Verdict::Escalate);
        assert_eq!(d.approval, Some((1, 3600)));
    }

    #[test]
    fn contradictory_or_unknown_rules_are_refused_with_the_field() {
        let e = RuleKind::parse("teleport", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("kind"));
        let e = RuleKind::parse(
            "category",
            &serde_json::json!({"allow": ["a"], "deny": ["a"]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("params.deny"));
        let e = RuleKind::parse(
            "budget",
            &serde_json::json!({"period": "day", "max_minor": -5}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("params.max_minor"));
        let e = RuleKind::parse(
            "budget",
            &serde_json::json!({"period": "fortnight", "max_minor": 5}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("params"));
        let e = RuleKind::parse(
            "per_transaction_cap",
            &serde_json::json!({"max_minor": "5"}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("params"));
        assert!(RuleKind::parse(
            "rate",
            &serde_json::json!({"max_transactions": 3, "per_seconds": 60})
        )
        .is_ok());
    }

    #[test]
    fn periods_start_at_utc_midnight_monday_and_the_first() {
        let now = Utc.with_ymd_and_hms(2026, 11, 19, 13, 5, 0).unwrap(); // a Thursday
        assert_eq!(
            Period::Day.start(now),
            Utc.with_ymd_and_hms(2026, 11, 19, 0, 0, 0).unwrap()
        );
        assert_eq!(
            Period::Week.start(now),
            Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap()
        );
        assert_eq!(
            Period::Month.start(now),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        let kind = prop_oneof![
            (1i64..1000).prop_map(|m| RuleKind::PerTransactionCap { max_minor: m }),
            (1i64..2000).prop_map(|m| RuleKind::Budget {
                period: Period::Day,
                max_minor: m
            }),
            (1i64..1000).prop_map(|a| RuleKind::EscalateAbove {
                amount_minor: a,
                tier: 1,
                timeout_seconds: 600
            }),
            any::<bool>().prop_map(|t| RuleKind::Merchant { trusted_only: t }),
            prop::sample::select(vec!["compute", "search", "gpu"]).prop_map(|c| {
                RuleKind::Category {
                    allow: None,
                    deny: Some(vec![c.to_owned()]),
                }
            }),
        ];
        (
            kind,
            prop::sample::select(vec![RuleAction::Deny, RuleAction::Escalate]),
            any::<bool>(),
            0u32..1000,
        )
            .prop_map(|(kind, action, enabled, n)| Rule {
                id: format!("rul_{n:04}"),
                code: format!("SF-{n:03}"),
                name: format!("rule {n}"),
                enabled,
                action,
                kind,
            })
    }

    proptest! {
        /// The decision never depends on the order in which rules were created.
        #[test]
        fn the_decision_does_not_depend_on_rule_order(
            rules in prop::collection::vec(any_rule(), 0..8),
            amount in 1i64..3000,
            seed in any::<u64>(),
        ) {
            let mut shuffled = rules.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            let a = evaluate(&rules, &tx(amount), &ctx());
            let b = evaluate(&shuffled, &tx(amount), &ctx());
            prop_assert_eq!(a.result, b.result);
            prop_assert_eq!(a.rule.map(|r| r.id), b.rule.map(|r| r.id));
            prop_assert_eq!(a.evaluated_rules, b.evaluated_rules);
            prop_assert_eq!(a.approval, b.approval);
        }
    }
}
