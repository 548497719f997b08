//! What happens when an order is paid, and when it is not delivered: the one home of both.
//!
//! Every rail that secures the money of an order calls [`App::mark_paid`]: account credit (at
//! once, or when the owner approves an escalated order), a card checkout's webhook, an MPP
//! settlement, and a lease extension (an order of its own). It moves the order to its next state
//! ([`Order::mark_paid`]) and returns a [`Paid`]: everything that must commit in the same
//! transaction as the payment — the ledger charge when credit pays, a machine's service with
//! its provisioning job and resource tokens, a longer lease, the job that fulfils an instant
//! product. The rail adds its own records (its payment row, the approval's decision, the webhook
//! event, the request's remembered answer) and commits. A new rail is one call.
//!
//! Whatever is not delivered is refunded through [`App::refund_for`]: a ledger refund for
//! credit, a provider refund job for card and MPP.
//!
//! The modules of the use-cases depend on this one, never the other way round.

use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::delivery::Delivery;
use crate::jobs::kinds::{FulfillOrder, RefundPayment};
use crate::jobs::{JobError, JobKind};
use crate::ports::{
    Applied, Change, FulfillmentError, IdempotencyCompletion, IdempotencyRef, NewOrder, Refusal,
    StoreResult,
};
use crate::views::OrderOutcome;
use async_trait::async_trait;
use storefront_domain::catalog::Product;
use storefront_domain::event::{Event, EventType};
use storefront_domain::job::Job;
use storefront_domain::json::RawJson;
use storefront_domain::ledger::{LedgerKind, LedgerMovement};
use storefront_domain::money::display_minor;
use storefront_domain::order::{Failure, Order, OrderStatus, PaymentMethod, PaymentStatus};
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::Timestamp;
use storefront_domain::{DomainError, ErrorCode};

/// How the money of an order was secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rail {
    /// Account credit, charged in the request that ordered (or extended).
    Credit,
    /// Account credit, charged when the owner approved an escalated order.
    Approval,
    /// A card checkout, confirmed by the provider's webhook.
    Card,
    /// An MPP credential settled in the order's paid retry.
    Mpp,
}

impl Rail {
    /// Whether the money comes from the account's credit (a ledger charge commits with it).
    fn charges_credit(self) -> bool {
        matches!(self, Self::Credit | Self::Approval)
    }

    /// Whether a request waits for the order and fulfils an instant product inline.
    fn request_waits(self) -> bool {
        matches!(self, Self::Credit | Self::Mpp)
    }
}

/// A paid order and everything that commits with its payment.
pub(crate) struct Paid {
    pub order: Order,
    /// The ledger charge, when account credit pays.
    pub charge: Option<LedgerMovement>,
    /// A machine's delivery: its service, provisioning job and resource tokens.
    pub delivery: Option<Delivery>,
    /// A lease extension: the service with its longer lease, and the status it was read in
    /// (the change commits only if the service still has it).
    pub extended: Option<(Service, ServiceStatus)>,
    pub jobs: Vec<Job>,
    /// `order.created` then `order.paid`: both when the order is created paid, the second
    /// alone when an existing order is paid.
    events: Vec<Event>,
    fulfil_inline: bool,
}

impl Paid {
    /// The payment as a new order (credit orders and extensions are paid as they are placed).
    pub fn new_order(&self) -> NewOrder<'_> {
        NewOrder {
            charge: self.charge.as_ref(),
            service: self.delivery.as_ref().map(|d| &d.service),
            jobs: &self.jobs,
            resource_tokens: self.delivery.as_ref().map_or(&[], |d| &d.stored_tokens),
            events: &self.events,
            updates_service: self
                .extended
                .as_ref()
                .map(|(s, from)| (s, std::slice::from_ref(from))),
            ..NewOrder::of(&self.order)
        }
    }

    /// The payment of an existing order that must still be in one of `from`.
    pub fn change<'a>(&'a self, from: &'a [OrderStatus]) -> Change<'a> {
        Change {
            order: Some((&self.order, from)),
            // Charged when the order was marked paid.
            movement: self.charge.as_ref().map(|c| (c, self.order.updated_at)),
            new_service: self.delivery.as_ref().map(|d| &d.service),
            resource_tokens: self.delivery.as_ref().map_or(&[], |d| &d.stored_tokens),
            service: self
                .extended
                .as_ref()
                .map(|(s, from)| (s, std::slice::from_ref(from))),
            jobs: &self.jobs,
            events: self.events.get(1..).unwrap_or_default(),
            ..Change::default()
        }
    }

    /// The machine's `management_tokens`, shown in the one answer that hands them over.
    pub(crate) fn with_tokens(&self, outcome: OrderOutcome) -> OrderOutcome {
        match (outcome, &self.delivery) {
            (
                OrderOutcome::Accepted {
                    mut order,
                    retry_after_seconds,
                    payment_receipt,
                },
                Some(delivery),
            ) => {
                order.management_tokens = Some(delivery.tokens_view());
                OrderOutcome::Accepted {
                    order,
                    retry_after_seconds,
                    payment_receipt,
                }
            }
            (other, _) => other,
        }
    }
}

/// What gives the money of an order back: a ledger refund for credit, a provider refund job
/// for card and MPP. Empty for an order that paid nothing.
#[derive(Debug, Default)]
pub(crate) struct Refund {
    /// The ledger refund and when it happens.
    pub movement: Option<(LedgerMovement, Timestamp)>,
    pub job: Option<Job>,
}

impl Refund {
    /// The ledger movement as a [`Change`] takes it.
    pub fn movement(&self) -> Option<(&LedgerMovement, Timestamp)> {
        self.movement.as_ref().map(|(movement, at)| (movement, *at))
    }
}

impl App {
    /// Money for `order` is secured through `rail`: its next state and what delivers it.
    pub(crate) async fn mark_paid(
        &self,
        mut order: Order,
        product: &Product,
        rail: Rail,
    ) -> Result<Paid, DomainError> {
        let now = self.clock.now();
        order.mark_paid(product, now);
        let mut extended = None;
        let mut delivery = None;
        if let Some((service_id, added)) = order.lease_extension() {
            let mut service = self.load_service(&service_id).await?;
            let from = service.status;
            if !ServiceStatus::LIVE.contains(&from) {
                return Err(lease_over(&service));
            }
            service.extend_lease(added, now);
            extended = Some((service, from));
        } else if !product.requires_install_configuration {
            delivery = self.machine_delivery(product, &mut order, now);
        }
        let mut jobs = delivery.as_ref().map_or_else(Vec::new, |d| d.jobs.clone());
        let fulfil_inline = order.status == OrderStatus::Paid && rail.request_waits();
        if order.status == OrderStatus::Paid {
            // An instant product is fulfilled by the job, or inline by the request waiting for
            // it; then the job is its safety net, due once the request counts as dead (a no-op
            // when the request finished).
            let due = if fulfil_inline {
                now + self.settings.idempotency_lock_timeout
            } else {
                now
            };
            let fulfil = FulfillOrder {
                order_id: order.id.clone(),
            };
            jobs.push(fulfil.due_at(due, now));
        }
        let mut charge = None;
        if rail.charges_credit() && order.total_minor > 0 {
            let what = match &extended {
                Some((service, _)) => format!("lease extension of {}", service.id),
                None => product.name.clone(),
            };
            let approved = if rail == Rail::Approval {
                ", approved"
            } else {
                ""
            };
            charge = Some(LedgerMovement {
                account_id: order.account_id.clone().ok_or_else(DomainError::internal)?,
                kind: LedgerKind::Charge,
                amount_minor: -order.total_minor,
                order_id: Some(order.id.clone()),
                description: format!("{what} ({}){approved}", order.id),
            });
        }
        let events = self.order_events(&[EventType::OrderCreated, EventType::OrderPaid], &order);
        Ok(Paid {
            order,
            charge,
            delivery,
            extended,
            jobs,
            events,
            fulfil_inline,
        })
    }

    /// The answer of the request that paid, when it is known at commit time (everything but an
    /// instant product, which is fulfilled after the commit). Its key records it with the
    /// payment, without the tokens.
    pub(crate) fn answer_at_commit(
        &self,
        paid: &Paid,
        receipt: Option<&str>,
    ) -> Option<OrderOutcome> {
        (!paid.fulfil_inline).then(|| {
            let outcome = self.outcome_of(&paid.order);
            match receipt {
                Some(r) => outcome.with_receipt(r.to_owned()),
                None => outcome,
            }
        })
    }

    /// A committed payment, logged and counted.
    pub(crate) fn count_paid(&self, order: &Order, rail: Rail) {
        tracing::info!(order_id = %order.id, product_id = %order.product_id, total_minor = order.total_minor, rail = ?rail, "order paid");
        metrics::counter!("storefront_orders_total", "product" => order.product_id.clone())
            .increment(1);
    }

    /// After the payment committed: counted, logged, and — for the request that paid — its
    /// answer, fulfilling an instant product inline (the key records that answer).
    pub(crate) async fn paid_committed(
        &self,
        paid: Paid,
        rail: Rail,
        key: Option<&IdempotencyRef>,
        receipt: Option<String>,
    ) -> Result<Option<OrderOutcome>, DomainError> {
        self.count_paid(&paid.order, rail);
        if !rail.request_waits() {
            return Ok(None);
        }
        let outcome = match self.answer_at_commit(&paid, receipt.as_deref()) {
            Some(answer) => paid.with_tokens(answer),
            None => {
                let fulfilled = self.fulfill_paid(paid.order, key).await?;
                match receipt {
                    Some(r) => fulfilled.with_receipt(r),
                    None => fulfilled,
                }
            }
        };
        Ok(Some(outcome))
    }

    /// The fulfiller of `product` when it only computes in this process
    /// ([`crate::ports::Fulfiller::computes_in_process`]).
    pub(crate) fn in_process_fulfiller(
        &self,
        product: &Product,
    ) -> Option<&std::sync::Arc<dyn crate::ports::Fulfiller>> {
        self.fulfillers
            .get(&product.fulfiller)
            .filter(|f| f.computes_in_process())
    }

    /// Fulfils a paid instant order before its payment commits, when its product's fulfiller
    /// computes in this process: the order is then stored fulfilled, with `order.fulfilled` and
    /// without the fulfilment job, in the unit that charges it, and its answer is known at
    /// commit. `false` (and `paid` untouched) for any other product, or when fulfilling failed:
    /// that order is paid first and fulfilled after, and refunded if it fails again.
    pub(crate) async fn fulfil_before_commit(&self, paid: &mut Paid, product: &Product) -> bool {
        let Some(fulfiller) = self.in_process_fulfiller(product) else {
            return false;
        };
        if !paid.fulfil_inline {
            return false;
        }
        let order = &mut paid.order;
        match fulfiller
            .fulfill(product, &order.configuration, order.quantity)
            .await
        {
            Ok(value) => {
                order.status = OrderStatus::Fulfilled;
                order.result = Some(RawJson::from_value(&value));
                paid.jobs.retain(|job| job.kind != FulfillOrder::KIND);
                paid.events
                    .extend(self.order_events(&[EventType::OrderFulfilled], &paid.order));
                paid.fulfil_inline = false;
                true
            }
            Err(e) => {
                tracing::debug!(order_id = %order.id, detail = %e.detail, "fulfilling before the payment failed; the order takes the regular way");
                false
            }
        }
    }

    /// Runs the fulfiller of a paid instant order and records fulfilled, or failed and
    /// refunded (and the answer of the request's key, when a request waits for it).
    pub(crate) async fn fulfill_paid(
        &self,
        mut order: Order,
        key: Option<&IdempotencyRef>,
    ) -> Result<OrderOutcome, DomainError> {
        let product = self
            .catalog
            .get(&order.product_id)
            .ok_or_else(|| unknown_product(&order.product_id))?;
        let result = match self.fulfillers.get(&product.fulfiller) {
            Some(f) => {
                f.fulfill(product, &order.configuration, order.quantity)
                    .await
            }
            None => Err(FulfillmentError {
                message: "The product's fulfiller is not configured.".into(),
                detail: format!("no fulfiller named '{}'", product.fulfiller),
            }),
        };
        let now = self.clock.now();
        order.updated_at = now;
        let refund = match result {
            Ok(value) => {
                order.status = OrderStatus::Fulfilled;
                order.result = Some(RawJson::from_value(&value));
                Refund::default()
            }
            Err(e) => {
                tracing::warn!(order_id = %order.id, detail = %e.detail, "fulfillment failed; refunding");
                self.fail(&mut order, e.message, "refund: fulfillment failed", now)
            }
        };
        let outcome = self.outcome_of(&order);
        let completion = key.map(|key| IdempotencyCompletion::new(key.clone(), outcome.to_value()));
        let ended = match order.status {
            OrderStatus::Fulfilled => EventType::OrderFulfilled,
            _ => EventType::OrderFailed,
        };
        let events = self.order_events(&[ended], &order);
        let moved = self
            .store
            .apply_change(&Change {
                order: Some((&order, &[OrderStatus::Paid])),
                movement: refund.movement(),
                jobs: refund.job.as_slice(),
                completes: completion.as_ref(),
                events: &events,
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        match (moved, key) {
            (true, _) => Ok(outcome),
            // Another process finished this order first (crash recovery racing a slow holder):
            // report what it recorded.
            (false, Some(key)) => {
                let current = self.load_order(&order.id).await?;
                self.record_outcome(&current, key).await
            }
            (false, None) => Ok(self.outcome_of(&self.load_order(&order.id).await?)),
        }
    }

    /// Builds (and records) the answer of an order whose request was interrupted, fulfilling
    /// it first if it is a paid instant order.
    pub(crate) async fn resume_order(
        &self,
        order: Order,
        key: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        let is_instant = self
            .catalog
            .get(&order.product_id)
            .is_some_and(|p| p.kind == storefront_domain::catalog::ProductKind::Instant);
        if order.status == OrderStatus::Paid && is_instant {
            return self.fulfill_paid(order, Some(key)).await;
        }
        self.record_outcome(&order, key).await
    }

    async fn record_outcome(
        &self,
        order: &Order,
        key: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        let outcome = self.outcome_of(order);
        self.store
            .complete_idempotency_key(&IdempotencyCompletion::new(key.clone(), outcome.to_value()))
            .await
            .map_err(store_failure)?;
        Ok(outcome)
    }

    /// The answer an order request gets for the order as it is now.
    pub(crate) fn outcome_of(&self, order: &Order) -> OrderOutcome {
        match order.status {
            OrderStatus::Fulfilled => OrderOutcome::Created {
                order: self.order_view(order),
                payment_receipt: None,
            },
            OrderStatus::Failed => OrderOutcome::Failed {
                error: DomainError::new(
                    ErrorCode::FulfillmentFailed,
                    format!(
                        "Order {} failed: {} Nothing was charged (the payment was refunded).",
                        order.id,
                        order
                            .failure
                            .as_ref()
                            .map(|f| f.message.as_str())
                            .unwrap_or("the provider failed.")
                    ),
                    "Retry with a new idempotency key.",
                ),
            },
            // The service is still being provisioned: the credentials URL, not yet the credentials.
            _ => OrderOutcome::Accepted {
                order: self.with_service(self.order_view(order), order, None),
                retry_after_seconds: order.retry_after_seconds(),
                payment_receipt: None,
            },
        }
    }

    /// An order that will not be delivered fails, and what it paid is refunded.
    pub(crate) fn fail(
        &self,
        order: &mut Order,
        message: String,
        why: &str,
        now: Timestamp,
    ) -> Refund {
        order.status = OrderStatus::Failed;
        order.failure = Some(Failure {
            code: ErrorCode::FulfillmentFailed.as_str().into(),
            message,
        });
        order.updated_at = now;
        let refund = self.refund_for(order, why, now);
        if order.payment_status == PaymentStatus::Paid {
            order.payment_status = PaymentStatus::Refunded;
        }
        refund
    }

    /// What gives the money of a paid order back (nothing for an unpaid one).
    pub(crate) fn refund_for(&self, order: &Order, why: &str, now: Timestamp) -> Refund {
        if order.payment_status != PaymentStatus::Paid || order.total_minor <= 0 {
            return Refund::default();
        }
        match order.payment_method {
            PaymentMethod::Credit => Refund {
                movement: order.account_id.clone().map(|account_id| {
                    let movement = LedgerMovement {
                        account_id,
                        kind: LedgerKind::Refund,
                        amount_minor: order.total_minor,
                        order_id: Some(order.id.clone()),
                        description: format!("{why} ({})", order.id),
                    };
                    (movement, now)
                }),
                job: None,
            },
            PaymentMethod::Card | PaymentMethod::Mpp => Refund {
                movement: None,
                job: Some(
                    RefundPayment {
                        payment_id: None,
                        order_id: Some(order.id.clone()),
                        reason: why.to_owned(),
                    }
                    .due_now(now),
                ),
            },
        }
    }
}

/// What a unit that charges `order` (or holds it against a budget) did: written (`true`),
/// stale (`false`: someone else won the race), or refused in the buyer's words.
pub(crate) fn charged(applied: StoreResult<Applied>, order: &Order) -> Result<bool, DomainError> {
    match applied.map_err(store_failure)? {
        Applied::Done => Ok(true),
        Applied::Stale => Ok(false),
        Applied::Refused(refusal) => Err(refused(refusal, order)),
    }
}

/// Translates what the store refused when an order was to be charged or held: the balance, or
/// a budget of the agent.
fn refused(refusal: Refusal, order: &Order) -> DomainError {
    let what = if order.lease_extension().is_some() {
        "extension"
    } else {
        "order"
    };
    let money = |minor| display_minor(minor, &order.currency);
    match refusal {
        Refusal::InsufficientCredits { balance_minor } => {
            insufficient_credits(balance_minor, order.total_minor, &order.currency)
        }
        Refusal::BudgetExceeded {
            spent_minor,
            max_minor,
        } => DomainError::new(
            ErrorCode::SpendingCapExceeded,
            format!(
                "This {what} of {} would exceed the agent's budget: {} already spent or waiting for approval of {}.",
                money(order.total_minor),
                money(spent_minor),
                money(max_minor)
            ),
            "Ask the account owner to raise the budget, or wait for the next period.",
        ),
    }
}

/// `402 insufficient_credits`, naming the balance and the price.
pub(crate) fn insufficient_credits(
    balance_minor: i64,
    total_minor: i64,
    currency: &storefront_domain::money::Currency,
) -> DomainError {
    DomainError::new(
        ErrorCode::InsufficientCredits,
        format!(
            "The balance is {} but this costs {}.",
            display_minor(balance_minor, currency),
            display_minor(total_minor, currency)
        ),
        "Top up the account's credits, or buy something smaller.",
    )
}

/// A lease that ended before its extension was paid.
pub(crate) fn lease_over(service: &Service) -> DomainError {
    DomainError::new(
        ErrorCode::InvalidState,
        format!(
            "Service {} is {} and can no longer be extended.",
            service.id,
            service.status.as_str()
        ),
        "Order a new machine; the lease is over.",
    )
}

#[async_trait]
impl JobKind for FulfillOrder {
    const KIND: &'static str = "order.fulfill";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        let order = app
            .load_order(&self.order_id)
            .await
            .map_err(|e| JobError::retry(e.message))?;
        if order.status != OrderStatus::Paid {
            return Ok(());
        }
        app.fulfill_paid(order, None)
            .await
            .map(|_| ())
            .map_err(|e| JobError::retry(e.message))
    }
}
