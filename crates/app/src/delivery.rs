//! What delivers a paid machine order, made in the order's own transaction (an outbox): the
//! service waiting to be provisioned, its provisioning job, and its resource tokens (secrets
//! shown once; only their hashes are stored). A paid order never lacks what delivers it.

use crate::app::App;
use crate::jobs::kinds::ProvisionMachine;
use crate::jobs::JobKind;
use crate::ports::ResourceToken;
use crate::principal::TokenScope;
use serde_json::{json, Value};
use storefront_domain::catalog::{Product, ProductKind};
use storefront_domain::ids::ServiceId;
use storefront_domain::job::Job;
use storefront_domain::order::Order;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::Timestamp;

pub(crate) struct Delivery {
    pub service: Service,
    pub jobs: Vec<Job>,
    pub stored_tokens: Vec<ResourceToken>,
    tokens: Vec<(TokenScope, String)>,
}

impl Delivery {
    /// `management_tokens` for the one response that shows them.
    pub fn tokens_view(&self) -> Value {
        let token = |scope: TokenScope| {
            self.tokens
                .iter()
                .find(|(s, _)| *s == scope)
                .map(|(_, t)| t.clone())
        };
        json!({
            "read_token": token(TokenScope::Read),
            "extend_token": token(TokenScope::Extend),
            "terminate_token": token(TokenScope::Terminate),
        })
    }
}

/// How long the lease bought by this order's configuration lasts.
fn lease_seconds(product: &Product, order: &Order) -> i64 {
    let units = product
        .pricing
        .unit_field
        .as_ref()
        .and_then(|f| order.configuration.get(f))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    // A per-use machine runs for an hour per use.
    let unit = product.pricing.model.unit_seconds().unwrap_or(3_600);
    units.saturating_mul(unit)
}

/// The service an order of `product` will deliver, waiting to be provisioned.
fn new_service(product: &Product, order: &Order, now: Timestamp) -> Service {
    let text = |field: &str| {
        order
            .configuration
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let id = ServiceId::generate();
    Service {
        display_name: text("hostname")
            .unwrap_or_else(|| format!("{}-{}", product.id, &id.as_str()[id.as_str().len() - 6..])),
        id,
        order_id: order.id.clone(),
        account_id: order
            .account_id
            .clone()
            .expect("paid orders have an account"),
        product_id: product.id.clone(),
        status: ServiceStatus::Provisioning,
        image: text("image").unwrap_or_else(|| "debian-12".into()),
        region: text("region").unwrap_or_else(|| "local".into()),
        authorized_key: text("ssh_public_key"),
        host: None,
        ssh_port: None,
        ssh_username: "root".into(),
        host_key_fingerprint: None,
        host_public_key: None,
        machine_size: product.machine_size(&order.configuration),
        backups_enabled: order
            .configuration
            .get("backups_enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        private_key_sealed: None,
        lease_seconds: lease_seconds(product, order),
        expires_at: None,
        activated_at: None,
        management_capabilities: product.management_capabilities.clone(),
        created_at: now,
        updated_at: now,
    }
}

impl App {
    /// The delivery of an async order whose product a provisioner delivers; `None` otherwise.
    /// Sets the order's `service_id`.
    pub(crate) fn machine_delivery(
        &self,
        product: &Product,
        order: &mut Order,
        now: Timestamp,
    ) -> Option<Delivery> {
        if product.kind != ProductKind::Async {
            return None;
        }
        self.provisioner(&product.fulfiller)?;
        let service = new_service(product, order, now);
        order.service_id = Some(service.id.clone());
        let tokens: Vec<(TokenScope, String)> = TokenScope::ALL
            .into_iter()
            .map(|scope| (scope, crate::secrets::new_resource_token()))
            .collect();
        let stored_tokens = tokens
            .iter()
            .map(|(scope, secret)| ResourceToken {
                token_hash: crate::secrets::hash_secret(secret),
                service_id: service.id.clone(),
                scope: scope.as_str().to_owned(),
                created_at: now,
            })
            .collect();
        let provision = ProvisionMachine {
            service_id: service.id.clone(),
        };
        Some(Delivery {
            jobs: vec![provision.due_now(now)],
            service,
            stored_tokens,
            tokens,
        })
    }
}
