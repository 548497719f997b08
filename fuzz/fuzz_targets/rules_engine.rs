//! Arbitrary rule definitions (kind + JSON parameters) and transactions through the governance
//! engine: parsing refuses or accepts without panicking, evaluation never panics, every enabled
//! rule is counted, and the verdict does not depend on the order the rules are listed in.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use storefront_domain::governance::{evaluate, Context, Rule, RuleAction, RuleKind, Transaction};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    rules: Vec<(u8, &'a str, bool, bool)>,
    amount_minor: i64,
    category: Option<&'a str>,
    merchant_domain: Option<&'a str>,
    product_id: Option<&'a str>,
    spent: (i64, i64, i64),
    recent: Vec<i32>,
}

fuzz_target!(|input: Input| {
    let mut rules = Vec::new();
    for (n, (kind, params, escalate, enabled)) in input.rules.iter().enumerate().take(12) {
        let kind_name = RuleKind::NAMES[usize::from(*kind) % RuleKind::NAMES.len()];
        let Ok(params) = serde_json::from_str(params) else {
            continue;
        };
        let Ok(kind) = RuleKind::parse(kind_name, &params) else {
            continue;
        };
        rules.push(Rule {
            id: format!("r{n}"),
            code: format!("SF-{n:03}"),
            name: format!("rule {n}"),
            enabled: *enabled,
            action: if *escalate {
                RuleAction::Escalate
            } else {
                RuleAction::Deny
            },
            kind,
        });
    }
    let now = chrono::Utc::now();
    let tx = Transaction {
        amount_minor: input.amount_minor,
        currency: "usd".into(),
        merchant_name: None,
        merchant_domain: input.merchant_domain.map(str::to_owned),
        category: input.category.map(str::to_owned),
        product_id: input.product_id.map(str::to_owned),
    };
    let ctx = Context {
        now,
        spent_day_minor: input.spent.0,
        spent_week_minor: input.spent.1,
        spent_month_minor: input.spent.2,
        recent_transactions: input
            .recent
            .iter()
            .take(64)
            .map(|s| now - chrono::Duration::seconds(i64::from(*s).abs()))
            .collect(),
        trusted_stores: vec!["shop.example".into()],
        blocked_stores: vec!["bad.example".into()],
    };
    let forward = evaluate(&rules, &tx, &ctx);
    assert_eq!(
        forward.evaluated_rules,
        rules.iter().filter(|r| r.enabled).count()
    );
    rules.reverse();
    let backward = evaluate(&rules, &tx, &ctx);
    assert_eq!(forward.result, backward.result);
    assert_eq!(forward.rule.map(|r| r.id), backward.rule.map(|r| r.id));
});
