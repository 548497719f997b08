//! Credit top-ups: a card checkout that credits the account's ledger when the webhook says it
//! was paid (see `card`).

use super::{card_not_configured, gateway_unavailable, redirect};
use crate::app::{store_failure, App};
use crate::ports::CheckoutRequest;
use serde::Serialize;
use serde_json::Value;
use storefront_domain::ids::PaymentId;
use storefront_domain::money::MAX_AMOUNT_MINOR;
use storefront_domain::order::PaymentMethod;
use storefront_domain::payment::{Payment, PaymentPurpose, PaymentState};
use storefront_domain::timestamp::format;
use storefront_domain::DomainError;

/// A credit top-up as shown to its owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpView {
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `pending`, `succeeded` or `canceled`.
    pub status: &'static str,
    pub payment_action: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl App {
    /// `POST /api/v1/account/top-ups`: a card checkout that credits the account when paid.
    pub async fn create_top_up(
        &self,
        principal: &crate::Principal,
        amount_minor: i64,
    ) -> Result<TopUpView, DomainError> {
        let account_id = principal.require_owner()?.clone();
        if !(100..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(DomainError::validation(
                "amount_minor",
                format!("amount_minor must be between 100 and {MAX_AMOUNT_MINOR} minor units."),
                "Send a whole number of cents, like 2000 for 20.00.",
            ));
        }
        let card = self.card.clone().ok_or_else(card_not_configured)?;
        let account = self
            .store
            .get_account(&account_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        let now = self.clock.now();
        let id = PaymentId::generate();
        let back = format!("{}/api/v1/account/top-ups/{id}", self.settings.base_url);
        let session = card
            .create_checkout(&CheckoutRequest {
                reference: id.to_string(),
                description: format!("Credit top-up ({id})"),
                amount_minor,
                currency: account.currency.to_string(),
                customer_email: Some(account.email.clone()),
                success_url: back.clone(),
                cancel_url: back,
                expires_at: now + self.settings.checkout_ttl,
            })
            .await
            .map_err(gateway_unavailable)?;
        let payment = Payment {
            id,
            account_id: Some(account_id),
            order_id: None,
            purpose: PaymentPurpose::TopUp,
            rail: PaymentMethod::Card,
            amount_minor,
            currency: account.currency,
            status: PaymentState::Pending,
            session_id: Some(session.id),
            checkout_url: Some(session.url),
            payment_reference: None,
            challenge_id: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_payment(&payment)
            .await
            .map_err(store_failure)?;
        Ok(top_up_view(&payment))
    }

    /// `GET /api/v1/account/top-ups/{id}`.
    pub async fn get_top_up(
        &self,
        principal: &crate::Principal,
        id: &str,
    ) -> Result<TopUpView, DomainError> {
        let account = principal.require_owner()?;
        let not_found = || DomainError::not_found("top-up", id);
        let payment_id = PaymentId::parse(id).ok_or_else(not_found)?;
        let payment = self
            .store
            .get_payment(&payment_id)
            .await
            .map_err(store_failure)?
            .filter(|p| {
                p.purpose == PaymentPurpose::TopUp && p.account_id.as_ref() == Some(account)
            })
            .ok_or_else(not_found)?;
        Ok(top_up_view(&payment))
    }
}

fn top_up_view(p: &Payment) -> TopUpView {
    TopUpView {
        id: p.id.to_string(),
        amount_minor: p.amount_minor,
        currency: p.currency.to_string(),
        status: p.status.as_str(),
        payment_action: (p.status == PaymentState::Pending)
            .then(|| p.checkout_url.as_deref().map(redirect))
            .flatten(),
        created_at: format(&p.created_at),
        updated_at: format(&p.updated_at),
    }
}
