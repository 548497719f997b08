//! Refunds through the provider that took the money (card and MPP; credit is refunded in the
//! ledger by the lifecycle).

use crate::app::App;
use crate::jobs::kinds::RefundPayment;
use crate::jobs::{JobError, JobKind};
use crate::ports::{Applied, Change};
use async_trait::async_trait;
use storefront_domain::event::{Event, EventType};
use storefront_domain::job::Job;
use storefront_domain::payment::{Payment, PaymentState};
use storefront_domain::timestamp::Timestamp;
use storefront_domain::DomainError;

impl RefundPayment {
    /// The refund of a payment that arrived for an order that no longer waited for it.
    pub(crate) fn orphaned(payment: &Payment, now: Timestamp) -> Job {
        Self {
            payment_id: Some(payment.id.clone()),
            order_id: payment.order_id.clone(),
            reason: "paid for an order that no longer waited".into(),
        }
        .due_now(now)
    }
}

#[async_trait]
impl JobKind for RefundPayment {
    const KIND: &'static str = "payment.refund";
    const MAX_ATTEMPTS: i64 = 10;

    /// Pays a payment back through its provider; the refund's idempotency key is the payment's
    /// id, so a retried job never refunds twice.
    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        let payment = match (&self.payment_id, &self.order_id) {
            (Some(id), _) => app.store.get_payment(id).await,
            (None, Some(order)) => app.store.find_payment_for_order(order).await,
            (None, None) => return Err(JobError::fatal("refund job without an order or payment")),
        }
        .map_err(JobError::retry)?;
        let Some(mut payment) = payment else {
            // An orphaned MPP settlement has no row: nothing to look up, the job says it all.
            return Err(JobError::fatal("no payment to refund"));
        };
        if payment.status == PaymentState::Refunded {
            return Ok(());
        }
        let Some(reference) = payment.payment_reference.clone() else {
            return Err(JobError::fatal(format!(
                "payment {} has no provider reference",
                payment.id
            )));
        };
        let card = app
            .card
            .clone()
            .ok_or_else(|| JobError::retry("card gateway not configured; cannot refund yet"))?;
        let refund_id = card
            .refund(
                &reference,
                payment.amount_minor,
                &format!("refund_{}", payment.id),
            )
            .await
            .map_err(|e| JobError::retry(e.detail))?;
        payment.status = PaymentState::Refunded;
        payment.updated_at = app.clock.now();
        let events = app
            .refund_event(&payment, &refund_id, &self.reason)
            .await
            .map_err(|e| JobError::retry(e.message))?;
        app.store
            .apply_change(&Change {
                payment: Some((&payment, &[PaymentState::Succeeded, PaymentState::Pending])),
                events: &events,
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(JobError::retry)?;
        tracing::info!(payment_id = %payment.id, %refund_id, reason = %self.reason, "payment refunded");
        Ok(())
    }
}

impl App {
    /// `payment.refunded` for the account that paid (and its agent, if an agent bought).
    async fn refund_event(
        &self,
        payment: &Payment,
        refund_id: &str,
        reason: &str,
    ) -> Result<Vec<Event>, DomainError> {
        let Some(account) = &payment.account_id else {
            return Ok(Vec::new());
        };
        let agent = match &payment.order_id {
            Some(order) => self.load_order(order).await?.agent_id,
            None => None,
        };
        let data = serde_json::json!({
            "id": payment.id,
            "order_id": payment.order_id,
            "rail": payment.rail,
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
            "status": "refunded",
            "refund_id": refund_id,
            "reason": reason,
        });
        Ok(vec![Event::new(
            EventType::PaymentRefunded,
            account.clone(),
            agent,
            data,
            payment.updated_at,
        )])
    }
}
