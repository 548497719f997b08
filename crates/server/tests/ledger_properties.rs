//! Property: after any sequence of top-ups, orders, failed fulfilments and cancellations, every
//! account's balance equals the sum of its ledger and never goes below zero, and the balance is
//! exactly what the successful operations imply.

mod common;

use async_trait::async_trait;
use common::Backend;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use storefront_app::orders::{BillingDetails, OrderRequest, OrderSource};
use storefront_app::ports::{Fulfiller, FulfillmentError, Store};
use storefront_app::quotes::QuoteRequest;
use storefront_app::secrets::UrlSigner;
use storefront_app::views::OrderOutcome;
use storefront_app::{App, AppSettings, ManualClock, Principal};
use storefront_domain::catalog::{Availability, Catalog, CatalogSpec, Product};
use storefront_domain::ids::AccountId;
use storefront_domain::ErrorCode;

const CATALOG: &str = r#"
[[products]]
id = "lookup"
sku = "lookup"
name = "Lookup"
category = "search"
description = "Instant; fails when asked to."
kind = "instant"
fulfiller = "flaky"
[products.pricing]
model = "per_use"
unit_minor = 7
currency = "usd"
[[products.fields]]
name = "fail"
type = "boolean"
default = false

[[products]]
id = "box"
sku = "box"
name = "Box"
category = "hosting"
description = "Async, waits for install configuration (cancelable)."
kind = "async"
fulfiller = "local"
requires_install_configuration = true
[products.pricing]
model = "per_hour"
base_minor = 10
unit_minor = 25
currency = "usd"
unit_field = "hours"
[[products.fields]]
name = "hours"
type = "integer"
default = 1
minimum = 1
maximum = 10
"#;

/// Succeeds unless the configuration says `fail: true`.
struct Flaky;

#[async_trait]
impl Fulfiller for Flaky {
    // A computation: its orders are fulfilled in the unit that charges them, and one that fails
    // takes the regular way (charged, then refunded) — the properties hold on both.
    fn computes_in_process(&self) -> bool {
        true
    }

    async fn fulfill(
        &self,
        _p: &Product,
        c: &Map<String, Value>,
        _q: i64,
    ) -> Result<Value, FulfillmentError> {
        if c.get("fail") == Some(&Value::Bool(true)) {
            Err(FulfillmentError {
                message: "asked to fail".into(),
                detail: "test".into(),
            })
        } else {
            Ok(json!({"ok": true}))
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    TopUp(i64),
    Adjust(i64),
    Lookup { fail: bool },
    Box { hours: i64 },
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..400).prop_map(Op::TopUp),
        (1i64..300).prop_map(|a| Op::Adjust(-a)),
        any::<bool>().prop_map(|fail| Op::Lookup { fail }),
        (1i64..=10).prop_map(|hours| Op::Box { hours }),
        (0usize..8).prop_map(Op::Cancel),
    ]
}

async fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let url = backend.fresh_database_url(dir.path()).await;
    let store: Arc<dyn Store> = storefront_store::open(&url).await.unwrap();
    let spec: CatalogSpec = toml::from_str(CATALOG).unwrap();
    let catalog = Catalog::build(spec, |_| Availability::Available).unwrap();
    let fulfillers: HashMap<String, Arc<dyn Fulfiller>> =
        [("flaky".to_owned(), Arc::new(Flaky) as Arc<dyn Fulfiller>)].into();
    let app = App::new(
        store.clone(),
        catalog,
        Arc::new(ManualClock::default()),
        fulfillers,
        UrlSigner::new(b"k".repeat(32), vec![]),
        AppSettings::default(),
    );
    let (account, key) = app
        .admin_create_account("p@example.com", "prop")
        .await
        .unwrap();
    let principal = app.authenticate(&key.api_key).await.unwrap();
    let mut expected = 0i64;
    let mut boxes: Vec<(String, i64)> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::TopUp(a) => {
                app.admin_grant_credits(account.id.as_str(), a, "top up")
                    .await
                    .unwrap();
                expected += a;
            }
            Op::Adjust(a) => {
                if app
                    .admin_grant_credits(account.id.as_str(), a, "adjust")
                    .await
                    .is_ok()
                {
                    expected += a;
                } else {
                    prop_assert!(
                        expected + a < 0,
                        "an adjustment was refused although it fit"
                    );
                }
            }
            Op::Lookup { fail } => {
                let outcome = order(&app, &principal, i, "lookup", json!({"fail": fail})).await;
                match outcome {
                    Ok(OrderOutcome::Created { order, .. }) => expected -= order.total_minor,
                    Ok(OrderOutcome::Failed { error }) => {
                        prop_assert_eq!(error.code, ErrorCode::FulfillmentFailed)
                    }
                    Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                    Err(e) => prop_assert_eq!(e.code, ErrorCode::InsufficientCredits),
                }
            }
            Op::Box { hours } => {
                match order(&app, &principal, i, "box", json!({"hours": hours})).await {
                    Ok(OrderOutcome::Accepted { order, .. }) => {
                        expected -= order.total_minor;
                        boxes.push((order.id, order.total_minor));
                    }
                    Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                    Err(e) => prop_assert_eq!(e.code, ErrorCode::InsufficientCredits),
                }
            }
            Op::Cancel(n) => {
                if !boxes.is_empty() {
                    let (id, total) = boxes[n % boxes.len()].clone();
                    match app.cancel_order(&principal, &id).await {
                        Ok(_) => expected += total,
                        Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidState),
                    }
                }
            }
        }
        let balance = app.balance(&principal).await.unwrap().balance_minor;
        prop_assert!(balance >= 0);
        prop_assert_eq!(balance, expected);
        prop_assert_eq!(
            store
                .ledger_sum(&AccountId::parse(account.id.as_str()).unwrap())
                .await
                .unwrap(),
            balance
        );
    }
    Ok(())
}

async fn order(
    app: &App,
    principal: &Principal,
    i: usize,
    product: &str,
    configuration: Value,
) -> Result<OrderOutcome, storefront_domain::DomainError> {
    let request = OrderRequest {
        source: OrderSource::Configure(QuoteRequest {
            product_id: product.into(),
            quantity: None,
            configuration: configuration.as_object().unwrap().clone(),
        }),
        payment_method: None,
        billing: BillingDetails::default(),
    };
    let key = storefront_domain::idempotency::IdempotencyKey::parse(&format!("key-{i}")).unwrap();
    app.place_order(principal, &key, &request, None)
        .await
        .map(|p| p.outcome)
}

fn check(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(backend, ops))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_balance_is_the_sum_of_the_ledger_and_never_negative_on_sqlite(ops in prop::collection::vec(op(), 1..25)) {
        check(Backend::Sqlite, ops)?;
    }

    #[test]
    fn the_balance_is_the_sum_of_the_ledger_and_never_negative_on_postgres(ops in prop::collection::vec(op(), 1..25)) {
        if let Some(backend) = Backend::postgres() {
            check(backend, ops)?;
        }
    }
}
