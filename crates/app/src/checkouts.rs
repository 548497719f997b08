//! Checkout sessions for purchases an agent makes elsewhere (docs/api.md, "Checkout sessions"):
//! create (rules run), update, complete (approved, or escalated to the owner), receipt (completed;
//! the amount must match), cancel; expiry after an hour. The storefront governs; the agent pays
//! with its own means.

use crate::app::{store_failure, App};
use crate::ports::{Applied, Change};
use crate::principal::Principal;
use serde::Serialize;
use serde_json::{json, Value};
use storefront_domain::agent::{Agent, Approval, ApprovalStatus};
use storefront_domain::checkout::{
    validate_items, Checkout, CheckoutStatus, Item, Line, ReceiptOrder, MAX_CATEGORY,
    MAX_METADATA_BYTES, MAX_NAME,
};
use storefront_domain::governance::{Decision, Transaction, Verdict};
use storefront_domain::ids::{ApprovalId, CheckoutId, LineItemId, OrderId};
use storefront_domain::timestamp::format;
use storefront_domain::{DomainError, ErrorCode};

/// How long a checkout session lives.
const CHECKOUT_TTL_MINUTES: i64 = 60;

/// Create or update input (the governance API's body; docs/api.md, "Checkout sessions").
#[derive(Debug, Clone, Default)]
pub struct CheckoutInput {
    pub items: Option<Vec<Item>>,
    pub currency: Option<String>,
    pub merchant_name: Option<String>,
    pub merchant_domain: Option<String>,
    pub category: Option<String>,
    pub metadata: Option<Value>,
}

/// The payment the agent reports after paying elsewhere.
#[derive(Debug, Clone, Default)]
pub struct ReceiptInput {
    pub external_id: String,
    pub provider: String,
    pub amount_charged: i64,
    pub currency: Option<String>,
    /// RFC 3339; now when absent.
    pub paid_at: Option<String>,
    /// Kept with the checkout's metadata under `receipt`.
    pub metadata: Option<Value>,
}

/// A checkout session: the one shape every checkout endpoint answers with.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutResponse {
    pub id: String,
    pub status: CheckoutStatus,
    pub currency: String,
    pub line_items: Vec<Value>,
    pub merchant_name: Option<String>,
    pub merchant_domain: Option<String>,
    pub category: Option<String>,
    pub totals: Vec<Value>,
    pub messages: Vec<Value>,
    pub rule_result: Option<String>,
    pub rule_name: Option<String>,
    pub reason: Option<String>,
    pub approval_required: Option<Value>,
    pub order: Option<ReceiptOrder>,
    pub metadata: Option<Value>,
    pub expires_at: String,
    pub created_at: String,
}

fn checkout_error(code: ErrorCode, message: String, suggestion: &str) -> DomainError {
    DomainError::new(code, message, suggestion)
}

fn short(param: &str, raw: Option<String>, max: usize) -> Result<Option<String>, DomainError> {
    match raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > max => Err(DomainError::validation(
            param,
            format!("{param} is over {max} characters."),
            format!("Send at most {max} characters."),
        )),
        other => Ok(other),
    }
}

impl App {
    fn response(&self, c: &Checkout, approval: Option<&Approval>) -> CheckoutResponse {
        CheckoutResponse {
            id: c.id.to_string(),
            status: c.status,
            currency: c.currency.clone(),
            line_items: c
                .lines
                .iter()
                .map(|l| {
                    json!({
                        "id": l.id,
                        "item": {"name": l.item.name, "quantity": l.item.quantity, "sku": l.item.sku},
                        "base_amount": l.item.unit_amount,
                        "subtotal": l.total(),
                        "tax": 0,
                        "total": l.total(),
                    })
                })
                .collect(),
            merchant_name: c.merchant_name.clone(),
            merchant_domain: c.merchant_domain.clone(),
            category: c.category.clone(),
            totals: vec![
                json!({"type": "subtotal", "display_text": "Subtotal", "amount": c.total_minor}),
                json!({"type": "tax", "display_text": "Tax", "amount": 0}),
                json!({"type": "total", "display_text": "Total", "amount": c.total_minor}),
            ],
            messages: match (&c.status, &c.reason) {
                (CheckoutStatus::Canceled, Some(r)) => {
                    vec![json!({"type": "info", "content": r})]
                }
                _ => vec![],
            },
            rule_result: c.rule_result.clone(),
            rule_name: c.rule_name.clone(),
            reason: c.reason.clone(),
            approval_required: approval
                .filter(|a| a.status == ApprovalStatus::Pending)
                .map(|a| {
                    json!({
                        "approval_id": a.id,
                        "tier": a.tier,
                        "method": storefront_domain::agent::APPROVAL_METHOD,
                        "timeout": (a.expires_at - a.created_at).num_seconds(),
                        "status": a.status,
                    })
                }),
            order: c.order.clone(),
            metadata: c.metadata.clone(),
            expires_at: format(&c.expires_at),
            created_at: format(&c.created_at),
        }
    }

    /// A checkout of this agent, expired ones canceled on the way.
    async fn own_checkout(&self, agent: &Agent, id: &str) -> Result<Checkout, DomainError> {
        let not_found = || {
            checkout_error(
                ErrorCode::CheckoutNotFound,
                format!("No checkout with id '{id}' exists."),
                "Use the id POST /api/v1/agent/checkout returned.",
            )
        };
        let checkout_id = CheckoutId::parse(id).ok_or_else(not_found)?;
        let mut checkout = self
            .store
            .get_checkout(&checkout_id)
            .await
            .map_err(store_failure)?
            .filter(|c| c.agent_id == agent.id)
            .ok_or_else(not_found)?;
        let open = !matches!(
            checkout.status,
            CheckoutStatus::Completed | CheckoutStatus::Canceled
        );
        if open && self.clock.now() >= checkout.expires_at {
            let expected = checkout.status;
            checkout.status = CheckoutStatus::Canceled;
            checkout.reason = Some("the checkout session expired".into());
            checkout.updated_at = self.clock.now();
            self.store
                .apply_change(&Change {
                    checkout: Some((&checkout, &[expected])),
                    ..Change::default()
                })
                .await
                .and_then(Applied::without_charge)
                .map_err(store_failure)?;
            return Err(checkout_error(
                ErrorCode::CheckoutExpired,
                format!(
                    "Checkout {} expired at {}.",
                    checkout.id,
                    format(&checkout.expires_at)
                ),
                "Create a new checkout.",
            ));
        }
        Ok(checkout)
    }

    fn apply_input(&self, c: &mut Checkout, input: CheckoutInput) -> Result<(), DomainError> {
        if let Some(items) = input.items {
            let total = validate_items(&items)?;
            c.lines = items
                .into_iter()
                .map(|item| Line {
                    id: LineItemId::generate(),
                    item,
                })
                .collect();
            c.total_minor = total;
        }
        if let Some(currency) = input.currency {
            let parsed =
                storefront_domain::money::Currency::parse_iso(&currency).ok_or_else(|| {
                    DomainError::validation(
                        "currency",
                        format!("'{currency}' is not an ISO 4217 currency code."),
                        "Use three letters, like USD.",
                    )
                })?;
            c.currency = parsed.to_string();
        }
        if let Some(name) = short("merchant_name", input.merchant_name, MAX_NAME)? {
            c.merchant_name = Some(name);
        }
        if let Some(domain) = short("merchant_domain", input.merchant_domain, MAX_NAME)? {
            c.merchant_domain = Some(domain.to_ascii_lowercase());
        }
        if let Some(category) = short("category", input.category, MAX_CATEGORY)? {
            c.category = Some(category);
        }
        if let Some(metadata) = input.metadata {
            if !metadata.is_object() || metadata.to_string().len() >= MAX_METADATA_BYTES {
                return Err(DomainError::validation(
                    "metadata",
                    "metadata must be a JSON object under 10 KB.",
                    "Send a small object of references.",
                ));
            }
            c.metadata = Some(metadata);
        }
        Ok(())
    }

    /// Runs the rules on the checkout's cart: ready, or canceled by a deny.
    async fn evaluate_checkout(
        &self,
        agent: &Agent,
        c: &mut Checkout,
    ) -> Result<Option<Decision>, DomainError> {
        if c.lines.is_empty() {
            c.status = CheckoutStatus::NotReadyForPayment;
            return Ok(None);
        }
        let tx = Transaction {
            amount_minor: c.total_minor,
            currency: c.currency.clone(),
            merchant_name: c.merchant_name.clone(),
            merchant_domain: c.merchant_domain.clone(),
            category: c.effective_category(),
            product_id: None,
        };
        let (decision, _) = self.decide(agent, &tx).await?;
        self.audit_decision(
            &agent.account_id,
            &agent.id,
            "checkout_decision",
            &decision,
            json!({"checkout_id": c.id, "amount_minor": c.total_minor, "merchant_domain": c.merchant_domain}),
        )
        .await?;
        c.rule_result = Some(
            match decision.result {
                Verdict::Allow => "allow",
                Verdict::Deny => "deny",
                Verdict::Escalate => "escalate",
            }
            .into(),
        );
        c.rule_name = decision.rule.as_ref().map(|r| r.name.clone());
        c.reason = Some(decision.reason.clone());
        c.status = if decision.result == Verdict::Deny {
            CheckoutStatus::Canceled
        } else {
            CheckoutStatus::ReadyForPayment
        };
        Ok(Some(decision))
    }

    /// `POST /api/v1/agent/checkout`.
    pub async fn create_checkout(
        &self,
        principal: &Principal,
        input: CheckoutInput,
    ) -> Result<CheckoutResponse, DomainError> {
        let agent = self.own_agent(principal).await?;
        let now = self.clock.now();
        let mut checkout = Checkout {
            id: CheckoutId::generate(),
            account_id: agent.account_id.clone(),
            agent_id: agent.id.clone(),
            status: CheckoutStatus::NotReadyForPayment,
            currency: "usd".into(),
            lines: vec![],
            total_minor: 0,
            merchant_name: None,
            merchant_domain: None,
            category: None,
            metadata: None,
            rule_result: None,
            rule_name: None,
            reason: None,
            order: None,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::minutes(CHECKOUT_TTL_MINUTES),
        };
        self.apply_input(&mut checkout, input)?;
        self.evaluate_checkout(&agent, &mut checkout).await?;
        self.store
            .insert_checkout(&checkout)
            .await
            .map_err(store_failure)?;
        Ok(self.response(&checkout, None))
    }

    /// `GET /api/v1/agent/checkout?checkout_id=`.
    pub async fn get_checkout(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<CheckoutResponse, DomainError> {
        let agent = self.own_agent(principal).await?;
        let checkout = self.own_checkout(&agent, id).await?;
        let approval = self
            .store
            .find_approval_for_checkout(&checkout.id)
            .await
            .map_err(store_failure)?;
        Ok(self.response(&checkout, approval.as_ref()))
    }

    /// `PUT /api/v1/agent/checkout/update`: only before approval; the rules run again.
    pub async fn update_checkout(
        &self,
        principal: &Principal,
        id: &str,
        input: CheckoutInput,
    ) -> Result<CheckoutResponse, DomainError> {
        let agent = self.own_agent(principal).await?;
        let mut checkout = self.own_checkout(&agent, id).await?;
        let expected = checkout.status;
        match expected {
            CheckoutStatus::NotReadyForPayment | CheckoutStatus::ReadyForPayment => {}
            CheckoutStatus::Completed => return Err(completed(&checkout)),
            _ => return Err(not_ready(&checkout, "updated")),
        }
        if self.pending_checkout_approval(&checkout).await?.is_some() {
            return Err(approval_pending(&checkout));
        }
        self.apply_input(&mut checkout, input)?;
        self.evaluate_checkout(&agent, &mut checkout).await?;
        checkout.updated_at = self.clock.now();
        self.save_checkout(&checkout, expected, None).await?;
        Ok(self.response(&checkout, None))
    }

    async fn pending_checkout_approval(
        &self,
        c: &Checkout,
    ) -> Result<Option<Approval>, DomainError> {
        Ok(self
            .store
            .find_approval_for_checkout(&c.id)
            .await
            .map_err(store_failure)?
            .filter(|a| a.status == ApprovalStatus::Pending))
    }

    async fn save_checkout(
        &self,
        c: &Checkout,
        expected: CheckoutStatus,
        new_approval: Option<&Approval>,
    ) -> Result<(), DomainError> {
        let applied = self
            .store
            .apply_change(&Change {
                checkout: Some((c, &[expected])),
                new_approval,
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        if applied {
            Ok(())
        } else {
            Err(checkout_error(
                ErrorCode::CheckoutNotReady,
                format!("Checkout {} changed meanwhile.", c.id),
                "Read it again with GET /api/v1/agent/checkout.",
            ))
        }
    }

    /// `POST /api/v1/agent/checkout/complete`: approved when the rules allow; escalated to the
    /// owner (poll the approval) when a rule escalates; canceled with `rules_denied` on a deny.
    pub async fn complete_checkout(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<CheckoutResponse, DomainError> {
        let agent = self.own_agent(principal).await?;
        let mut checkout = self.own_checkout(&agent, id).await?;
        match checkout.status {
            CheckoutStatus::ReadyForPayment => {}
            CheckoutStatus::Completed => return Err(completed(&checkout)),
            CheckoutStatus::Canceled => {
                // Canceled because the owner said no: say so.
                let denied = self
                    .store
                    .find_approval_for_checkout(&checkout.id)
                    .await
                    .map_err(store_failure)?
                    .is_some_and(|a| a.status == ApprovalStatus::Denied);
                if denied {
                    return Err(checkout_error(
                        ErrorCode::ApprovalDenied,
                        format!("The owner denied checkout {}.", checkout.id),
                        "Do not buy this; ask the owner.",
                    ));
                }
                return Err(not_ready(&checkout, "completed"));
            }
            _ => return Err(not_ready(&checkout, "completed")),
        }
        if self.pending_checkout_approval(&checkout).await?.is_some() {
            return Err(approval_pending(&checkout));
        }
        let decision = self
            .evaluate_checkout(&agent, &mut checkout)
            .await?
            .ok_or_else(|| not_ready(&checkout, "completed"))?;
        let now = self.clock.now();
        checkout.updated_at = now;
        match decision.result {
            Verdict::Deny => {
                self.save_checkout(&checkout, CheckoutStatus::ReadyForPayment, None)
                    .await?;
                Err(DomainError::new(
                    ErrorCode::RulesDenied,
                    format!(
                        "The rules denied checkout {}: {}.",
                        checkout.id,
                        checkout.reason.clone().unwrap_or_default()
                    ),
                    "Do not buy this; the checkout is canceled.",
                ))
            }
            Verdict::Allow => {
                checkout.status = CheckoutStatus::Approved;
                self.save_checkout(&checkout, CheckoutStatus::ReadyForPayment, None)
                    .await?;
                Ok(self.response(&checkout, None))
            }
            Verdict::Escalate => {
                let (tier, timeout) = decision
                    .approval
                    .unwrap_or((storefront_domain::governance::DEFAULT_TIER, 3600));
                let approval = Approval {
                    id: ApprovalId::generate(),
                    account_id: checkout.account_id.clone(),
                    agent_id: agent.id.clone(),
                    order_id: None,
                    checkout_id: Some(checkout.id.clone()),
                    status: ApprovalStatus::Pending,
                    tier,
                    rule_code: decision
                        .rule
                        .as_ref()
                        .map(|r| r.code.clone())
                        .unwrap_or_default(),
                    reason: decision.reason,
                    amount_minor: checkout.total_minor,
                    currency: checkout.currency.clone(),
                    decision_reason: None,
                    created_at: now,
                    expires_at: now + chrono::Duration::seconds(i64::from(timeout)),
                    decided_at: None,
                };
                self.save_checkout(&checkout, CheckoutStatus::ReadyForPayment, Some(&approval))
                    .await?;
                Ok(self.response(&checkout, Some(&approval)))
            }
        }
    }

    /// `POST /api/v1/agent/checkout/receipt`: the final step; the amount must match the total.
    pub async fn checkout_receipt(
        &self,
        principal: &Principal,
        id: &str,
        receipt: ReceiptInput,
    ) -> Result<CheckoutResponse, DomainError> {
        let agent = self.own_agent(principal).await?;
        let mut checkout = self.own_checkout(&agent, id).await?;
        match checkout.status {
            CheckoutStatus::Approved => {}
            CheckoutStatus::Completed => return Err(completed(&checkout)),
            _ => return Err(not_ready(&checkout, "given a receipt")),
        }
        let external_id = short("receipt.external_id", Some(receipt.external_id), 200)?
            .ok_or_else(|| {
                DomainError::validation(
                    "receipt.external_id",
                    "external_id is required.",
                    "Send the payment provider's transaction id.",
                )
            })?;
        let provider =
            short("receipt.provider", Some(receipt.provider), 100)?.ok_or_else(|| {
                DomainError::validation(
                    "receipt.provider",
                    "provider is required.",
                    "Send the payment provider's name, like stripe.",
                )
            })?;
        let currency_matches = receipt
            .currency
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case(&checkout.currency));
        if receipt.amount_charged != checkout.total_minor || !currency_matches {
            return Err(DomainError::new(
                ErrorCode::ReceiptMismatch,
                format!(
                    "The receipt says {} {} but checkout {} was approved for {} {}.",
                    receipt.amount_charged,
                    receipt.currency.as_deref().unwrap_or(&checkout.currency),
                    checkout.id,
                    checkout.total_minor,
                    checkout.currency
                ),
                "Report the amount actually charged; if it differs, cancel and start a new checkout.",
            )
            .with_param("receipt.amount_charged"));
        }
        let now = self.clock.now();
        let paid_at = match receipt.paid_at.as_deref() {
            Some(raw) => chrono::DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    DomainError::validation(
                        "receipt.paid_at",
                        format!("'{raw}' is not an RFC 3339 time."),
                        "Send a time like 2026-02-22T12:02:00Z, or omit it.",
                    )
                })?,
            None => now,
        };
        if let Some(extra) = receipt.metadata {
            if !extra.is_object() || extra.to_string().len() >= MAX_METADATA_BYTES {
                return Err(DomainError::validation(
                    "receipt.metadata",
                    "metadata must be a JSON object under 10 KB.",
                    "Send a small object, like {\"card_last4\": \"4242\"}.",
                ));
            }
            let mut metadata = checkout
                .metadata
                .take()
                .unwrap_or_else(|| Value::Object(Default::default()));
            if let Some(map) = metadata.as_object_mut() {
                map.insert("receipt".into(), extra);
            }
            checkout.metadata = Some(metadata);
        }
        checkout.order = Some(ReceiptOrder {
            id: OrderId::generate().to_string(),
            checkout_session_id: checkout.id.to_string(),
            external_payment_id: external_id,
            provider,
            amount_charged: receipt.amount_charged,
            completed_at: format(&paid_at),
        });
        checkout.status = CheckoutStatus::Completed;
        checkout.updated_at = now;
        self.save_checkout(&checkout, CheckoutStatus::Approved, None)
            .await?;
        Ok(self.response(&checkout, None))
    }

    /// `POST /api/v1/agent/checkout/cancel`: from any state but completed.
    pub async fn cancel_checkout(
        &self,
        principal: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> Result<CheckoutResponse, DomainError> {
        let agent = self.own_agent(principal).await?;
        let checkout = self.own_checkout(&agent, id).await?;
        let reason = short("reason", reason, 500)?;
        self.cancel_open_checkout(checkout, reason).await
    }

    /// Cancels an open checkout and any approval it waits for.
    pub(crate) async fn cancel_open_checkout(
        &self,
        mut checkout: Checkout,
        reason: Option<String>,
    ) -> Result<CheckoutResponse, DomainError> {
        match checkout.status {
            CheckoutStatus::Completed => return Err(completed(&checkout)),
            CheckoutStatus::Canceled => return Ok(self.response(&checkout, None)),
            _ => {}
        }
        if let Some(pending) = self.pending_checkout_approval(&checkout).await? {
            // Closing the approval cancels the checkout with it.
            self.close(
                pending,
                ApprovalStatus::Denied,
                Some("checkout canceled".into()),
            )
            .await?;
        }
        let expected = [
            CheckoutStatus::NotReadyForPayment,
            CheckoutStatus::ReadyForPayment,
            CheckoutStatus::Approved,
        ];
        checkout.status = CheckoutStatus::Canceled;
        checkout.reason = reason.or(Some("canceled by the agent".into()));
        checkout.updated_at = self.clock.now();
        self.store
            .apply_change(&Change {
                checkout: Some((&checkout, &expected)),
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        Ok(self.response(&checkout, None))
    }
}

fn completed(c: &Checkout) -> DomainError {
    checkout_error(
        ErrorCode::CheckoutCompleted,
        format!("Checkout {} is completed and cannot change.", c.id),
        "Start a new checkout for another purchase.",
    )
}

fn not_ready(c: &Checkout, what: &str) -> DomainError {
    checkout_error(
        ErrorCode::CheckoutNotReady,
        format!(
            "Checkout {} is {} and cannot be {what} now.",
            c.id,
            c.status.as_str()
        ),
        "Follow the flow: create → (update) → complete → receipt.",
    )
}

fn approval_pending(c: &Checkout) -> DomainError {
    checkout_error(
        ErrorCode::ApprovalPending,
        format!("Checkout {} waits for the owner's approval.", c.id),
        "Poll GET /api/v1/agent/approval/{approval_id} until it is decided.",
    )
}
