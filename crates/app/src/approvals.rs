//! Approvals (docs/api.md, "Approvals"): an agent-key order that a rule escalates waits in
//! `awaiting_approval` with nothing charged; the owner approves it (then it is charged and
//! delivered, in one transaction) or denies it, or it expires on the clock (then it is
//! canceled). Every decision is conditional on the approval still being pending, so it is taken
//! once.

use crate::agents::Escalation;
use crate::app::{store_failure, App};
use crate::jobs::kinds::ExpireApproval;
use crate::jobs::{JobError, JobKind};
use crate::lifecycle::{charged, Rail};
use crate::ports::{Applied, Change, IdempotencyCompletion, IdempotencyRef, NewOrder};
use crate::principal::Principal;
use crate::views::OrderOutcome;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Value};
use storefront_domain::agent::{Approval, ApprovalStatus};
use storefront_domain::event::EventType;
use storefront_domain::ids::ApprovalId;
use storefront_domain::job::Job;
use storefront_domain::order::{Order, OrderStatus};
use storefront_domain::timestamp::format;
use storefront_domain::{DomainError, ErrorCode};

fn approval_view(a: &Approval) -> Value {
    json!({
        "approval_id": a.id,
        "status": a.status,
        "tier": a.tier,
        "expires_at": format(&a.expires_at),
    })
}

/// The answer to an agent polling its approval (`GET /api/v1/agent/approval/{id}`), flat.
// The governance API's flat shape (docs/api.md, "Approvals").
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentApprovalView {
    pub approval_id: String,
    pub status: ApprovalStatus,
    /// The checkout session waiting for it, for a purchase elsewhere.
    pub checkout_id: Option<String>,
    /// The storefront order waiting for it (the governance API's shape knows checkouts only).
    pub order_id: Option<String>,
    /// Who approves: 1 is the account's owner.
    pub tier: u8,
    /// How the approver is asked (`notification`).
    pub method: String,
    /// Why it was decided so: the owner's reason on deny, or that the order was canceled.
    pub reason: Option<String>,
    pub decided_at: Option<String>,
    pub expires_at: String,
}

impl AgentApprovalView {
    fn of(a: &Approval) -> Self {
        Self {
            approval_id: a.id.to_string(),
            status: a.status,
            checkout_id: a.checkout_id.as_ref().map(ToString::to_string),
            order_id: a.order_id.as_ref().map(ToString::to_string),
            tier: a.tier,
            method: storefront_domain::agent::APPROVAL_METHOD.into(),
            reason: a.decision_reason.clone(),
            decided_at: a.decided_at.as_ref().map(format),
            expires_at: format(&a.expires_at),
        }
    }
}

impl App {
    /// Stores an escalated order waiting for its owner, with its approval and the job that
    /// expires it; nothing is charged.
    pub(crate) async fn await_approval(
        &self,
        order: Order,
        escalation: Escalation,
        key_ref: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        let view = self
            .hold_for_approval(order, escalation, key_ref, |view| {
                OrderOutcome::Accepted {
                    order: view.clone(),
                    retry_after_seconds: Some(10),
                    payment_receipt: None,
                }
                .to_value()
            })
            .await?;
        Ok(OrderOutcome::Accepted {
            order: view,
            retry_after_seconds: Some(10),
            payment_receipt: None,
        })
    }

    /// Stores an order waiting for the owner (an order, or a lease extension), with its approval,
    /// the job that expires it and the request's remembered answer (`outcome`); nothing is
    /// charged. Returns the order as shown.
    pub(crate) async fn hold_for_approval(
        &self,
        mut order: Order,
        escalation: Escalation,
        key_ref: &IdempotencyRef,
        outcome: impl FnOnce(&crate::views::OrderView) -> Value,
    ) -> Result<crate::views::OrderView, DomainError> {
        let now = self.clock.now();
        order.status = OrderStatus::AwaitingApproval;
        order.payment_status = storefront_domain::order::PaymentStatus::Unpaid;
        let approval = Approval {
            id: ApprovalId::generate(),
            account_id: order.account_id.clone().ok_or_else(DomainError::internal)?,
            agent_id: escalation.agent_id.clone(),
            order_id: Some(order.id.clone()),
            checkout_id: None,
            status: ApprovalStatus::Pending,
            tier: escalation.tier,
            rule_code: escalation.rule_code.clone(),
            reason: escalation.reason.clone(),
            amount_minor: order.total_minor,
            currency: order.currency.to_string(),
            decision_reason: None,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(i64::from(escalation.timeout_seconds)),
            decided_at: None,
        };
        let expire = ExpireApproval {
            approval_id: approval.id.clone(),
        }
        .due_at(approval.expires_at, now);
        let mut view = self.order_view(&order);
        view.approval = Some(approval_view(&approval));
        let remembered = outcome(&view);
        let mut created = self.order_events(&[EventType::OrderCreated], &order);
        created.push(
            self.approval_requested_event(&approval, &order.product_id)
                .await?,
        );
        let inserted = self
            .store
            .insert_order(&NewOrder {
                events: &created,
                idempotency: Some(key_ref),
                jobs: std::slice::from_ref(&expire),
                completes: Some(&IdempotencyCompletion::new(key_ref.clone(), remembered)),
                budget: escalation.guard.as_ref(),
                approval: Some(&approval),
                ..NewOrder::of(&order)
            })
            .await;
        // A new order updates no service, so it is never stale.
        charged(inserted, &order)?;
        tracing::info!(order_id = %order.id, approval_id = %approval.id, "order waits for the owner's approval");
        Ok(view)
    }

    /// The approval an order waits for (or waited for), as the order shows it.
    pub(crate) async fn approval_of(&self, order: &Order) -> Option<Value> {
        // Only agent-key orders can wait for an approval.
        order.agent_id.as_ref()?;
        match self.store.find_approval_for_order(&order.id).await {
            Ok(a) => a.map(|a| approval_view(&a)),
            Err(e) => {
                tracing::warn!(error = %e, "approval of an order unreadable");
                None
            }
        }
    }

    async fn owned_approval(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Approval, DomainError> {
        let account = principal.require_owner()?;
        let not_found = || DomainError::not_found("approval", id);
        let approval_id = ApprovalId::parse(id).ok_or_else(not_found)?;
        self.store
            .get_approval(&approval_id)
            .await
            .map_err(store_failure)?
            .filter(|a| &a.account_id == account)
            .ok_or_else(not_found)
    }

    /// `GET /api/v1/agent/approval/{id}`: the agent polls an approval of its own.
    pub async fn agent_approval(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<AgentApprovalView, DomainError> {
        self.current_agent_approval(principal, id)
            .await
            .map(|a| AgentApprovalView::of(&a))
    }

    async fn current_agent_approval(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Approval, DomainError> {
        let not_found = || {
            DomainError::new(
                ErrorCode::ApprovalNotFound,
                format!("No approval '{id}' of this agent."),
                "Use the approval_id of your order's approval.",
            )
        };
        let agent = principal
            .agent_id()
            .ok_or_else(|| principal.refuse("Only an agent key polls its approvals."))?;
        let approval_id = ApprovalId::parse(id).ok_or_else(not_found)?;
        let approval = self
            .store
            .get_approval(&approval_id)
            .await
            .map_err(store_failure)?
            .filter(|a| &a.agent_id == agent)
            .ok_or_else(not_found)?;
        // Report a timed-out approval as expired even before the job ran.
        if approval.status == ApprovalStatus::Pending && self.clock.now() >= approval.expires_at {
            if let Some(closed) = self
                .close(approval.clone(), ApprovalStatus::Expired, None)
                .await?
            {
                return Ok(closed);
            }
        }
        Ok(approval)
    }

    /// `GET /api/v1/approvals?status=`.
    pub async fn list_approvals(
        &self,
        principal: &Principal,
        status: Option<&str>,
    ) -> Result<Vec<Approval>, DomainError> {
        let account = principal.require_owner()?;
        let status = status
            .filter(|s| !s.is_empty())
            .map(|s| {
                ApprovalStatus::parse(s).ok_or_else(|| {
                    DomainError::validation(
                        "status",
                        format!("'{s}' is not an approval status."),
                        "Use pending, approved, denied or expired.",
                    )
                })
            })
            .transpose()?;
        self.store
            .list_approvals(account, status)
            .await
            .map_err(store_failure)
    }

    /// Owner's approval: the order is charged and delivered, in one transaction.
    pub async fn approve(&self, principal: &Principal, id: &str) -> Result<Approval, DomainError> {
        let mut approval = self.owned_approval(principal, id).await?;
        self.ensure_pending(&approval).await?;
        let now = self.clock.now();
        if let Some(checkout_id) = approval.checkout_id.clone() {
            // A purchase elsewhere: the checkout moves to approved; the agent pays itself.
            let mut checkout = self
                .store
                .get_checkout(&checkout_id)
                .await
                .map_err(store_failure)?
                .ok_or_else(DomainError::internal)?;
            checkout.status = storefront_domain::checkout::CheckoutStatus::Approved;
            checkout.rule_result = Some("allow".into());
            checkout.updated_at = now;
            approval.status = ApprovalStatus::Approved;
            approval.decided_at = Some(now);
            let resolved = self.approval_event(EventType::ApprovalResolved, &approval);
            let applied = self
                .store
                .apply_change(&Change {
                    events: std::slice::from_ref(&resolved),
                    approval: Some((&approval, &[ApprovalStatus::Pending])),
                    checkout: Some((
                        &checkout,
                        &[storefront_domain::checkout::CheckoutStatus::ReadyForPayment],
                    )),
                    ..Change::default()
                })
                .await
                .and_then(Applied::without_charge)
                .map_err(store_failure)?;
            return if applied {
                self.audit_approval(&approval).await?;
                Ok(approval)
            } else {
                Err(already_decided(&self.owned_approval(principal, id).await?))
            };
        }
        let order_id = approval
            .order_id
            .clone()
            .ok_or_else(DomainError::internal)?;
        let order = self.load_order(&order_id).await?;
        let product = self
            .catalog
            .get(&order.product_id)
            .ok_or_else(|| crate::catalog::unknown_product(&order.product_id))?;
        let paid = self.mark_paid(order, product, Rail::Approval).await?;
        approval.status = ApprovalStatus::Approved;
        approval.decided_at = Some(now);
        let payment = paid.change(&[OrderStatus::AwaitingApproval]);
        let mut events = payment.events.to_vec();
        events.push(self.approval_event(EventType::ApprovalResolved, &approval));
        let applied = self
            .store
            .apply_change(&Change {
                approval: Some((&approval, &[ApprovalStatus::Pending])),
                events: &events,
                ..payment
            })
            .await;
        if !charged(applied, &paid.order)? {
            return Err(already_decided(&self.owned_approval(principal, id).await?));
        }
        tracing::info!(approval_id = %approval.id, order_id = %paid.order.id, "approved; the order proceeds");
        self.paid_committed(paid, Rail::Approval, None, None)
            .await?;
        self.audit_approval(&approval).await?;
        Ok(approval)
    }

    /// Owner's denial: the order is canceled; nothing was charged.
    pub async fn deny(
        &self,
        principal: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> Result<Approval, DomainError> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
            return Err(DomainError::validation(
                "reason",
                "The reason is over 1000 characters.",
                "Say it shorter.",
            ));
        }
        let approval = self.owned_approval(principal, id).await?;
        self.ensure_pending(&approval).await?;
        let decided = self.close(approval, ApprovalStatus::Denied, reason).await?;
        decided.ok_or_else(|| {
            DomainError::new(
                ErrorCode::InvalidState,
                "The approval was decided meanwhile.",
                "Read it again.",
            )
        })
    }

    /// Refuses a decided or timed-out approval (expiring it on the way).
    async fn ensure_pending(&self, approval: &Approval) -> Result<(), DomainError> {
        if approval.status != ApprovalStatus::Pending {
            return Err(already_decided(approval));
        }
        if self.clock.now() >= approval.expires_at {
            self.close(approval.clone(), ApprovalStatus::Expired, None)
                .await?;
            return Err(DomainError::new(
                ErrorCode::ApprovalExpired,
                format!(
                    "Approval {} expired at {}.",
                    approval.id,
                    format(&approval.expires_at)
                ),
                "The order was canceled; the agent can order again.",
            ));
        }
        Ok(())
    }

    /// Denies or expires a pending approval and cancels its order, together. `None` when it was
    /// no longer pending.
    pub(crate) async fn close(
        &self,
        mut approval: Approval,
        status: ApprovalStatus,
        reason: Option<String>,
    ) -> Result<Option<Approval>, DomainError> {
        let now = self.clock.now();
        approval.status = status;
        approval.decision_reason = reason;
        approval.decided_at = Some(now);
        let order = match &approval.order_id {
            Some(id) => {
                let mut o = self.load_order(id).await?;
                o.status = OrderStatus::Canceled;
                o.updated_at = now;
                Some(o)
            }
            None => None,
        };
        let checkout = match &approval.checkout_id {
            Some(id) => {
                let mut c = self
                    .store
                    .get_checkout(id)
                    .await
                    .map_err(store_failure)?
                    .ok_or_else(DomainError::internal)?;
                c.status = storefront_domain::checkout::CheckoutStatus::Canceled;
                c.reason = Some(format!("approval {}", status.as_str()));
                c.updated_at = now;
                Some(c)
            }
            None => None,
        };
        let mut canceled = order.as_ref().map_or_else(Vec::new, |o| {
            self.order_events(&[EventType::OrderCanceled], o)
        });
        canceled.push(self.approval_event(EventType::ApprovalResolved, &approval));
        let applied = self
            .store
            .apply_change(&Change {
                events: &canceled,
                approval: Some((&approval, &[ApprovalStatus::Pending])),
                order: order
                    .as_ref()
                    .map(|o| (o, &[OrderStatus::AwaitingApproval][..])),
                checkout: checkout.as_ref().map(|c| {
                    (
                        c,
                        &[storefront_domain::checkout::CheckoutStatus::ReadyForPayment][..],
                    )
                }),
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        if applied {
            tracing::info!(approval_id = %approval.id, status = status.as_str(), "approval closed; order canceled");
            self.audit_approval(&approval).await?;
        }
        Ok(applied.then_some(approval))
    }

    async fn audit_approval(&self, a: &Approval) -> Result<(), DomainError> {
        self.audit(
            &a.account_id,
            Some(&a.agent_id),
            "approval",
            Some(a.status.as_str()),
            Some(&a.rule_code),
            json!({"approval_id": a.id, "order_id": a.order_id, "checkout_id": a.checkout_id, "amount_minor": a.amount_minor, "reason": a.decision_reason}),
        )
        .await
    }
}

fn already_decided(a: &Approval) -> DomainError {
    if a.status == ApprovalStatus::Expired {
        return DomainError::new(
            ErrorCode::ApprovalExpired,
            format!("Approval {} expired.", a.id),
            "The order was canceled; the agent can order again.",
        );
    }
    // The decision's reason (the owner's, or that the order was canceled) is the real answer
    // to "why can I not decide this?".
    let why = a
        .decision_reason
        .as_deref()
        .map(|r| format!(" Reason: {r}"))
        .unwrap_or_default();
    DomainError::new(
        ErrorCode::InvalidState,
        format!("Approval {} is already {}.{why}", a.id, a.status.as_str()),
        "An approval is decided once; read it with GET /api/v1/approvals.",
    )
}

#[async_trait]
impl JobKind for ExpireApproval {
    const KIND: &'static str = "approval.expire";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        let Some(approval) = app
            .store
            .get_approval(&self.approval_id)
            .await
            .map_err(JobError::retry)?
        else {
            return Ok(());
        };
        if approval.status != ApprovalStatus::Pending {
            return Ok(());
        }
        if app.clock.now() < approval.expires_at {
            // Not yet (a clock that runs behind the job's schedule): try again later.
            return Err(JobError::retry("approval not due yet"));
        }
        app.close(approval, ApprovalStatus::Expired, None)
            .await
            .map(|_| ())
            .map_err(|e| JobError::retry(e.message))
    }
}
