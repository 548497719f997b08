//! HTTP 402 Machine Payments Protocol with the official `mpp` crate: method `stripe`, intent
//! `charge`. The crate makes the wire formats (challenge, credential, receipt), binds each
//! challenge id with HMAC-SHA256 over its parameters and the request body's digest, and settles a
//! credential by creating a Stripe PaymentIntent with the shared payment token (at the
//! configured Stripe base URL, with an idempotency key derived from challenge id and token).

use async_trait::async_trait;
use mpp::protocol::methods::stripe::method::ChargeMethod;
use mpp::server::{stripe, Mpp, StripeChargeOptions, StripeConfig};
use mpp::{PaymentCredential, VerificationError};
use storefront_app::ports::{
    GatewayError, MppCharge, MppCredential, MppGateway, MppProblem, MppRejection, MppSettlement,
};
use storefront_domain::money::{display_minor, Currency};

pub struct MppConfig<'a> {
    pub stripe_api_base: &'a str,
    pub stripe_secret_key: &'a str,
    /// Stripe Business Network profile id advertised in challenges.
    pub network_id: &'a str,
    /// The challenge HMAC key (at least 32 bytes).
    pub hmac_secret: &'a str,
    pub realm: &'a str,
    pub currency: &'a Currency,
}

pub struct StripeMpp {
    mpp: Mpp<ChargeMethod>,
    currency: Currency,
}

impl StripeMpp {
    pub fn new(config: MppConfig<'_>) -> Result<Self, String> {
        let currency = config.currency.as_str();
        let mpp = Mpp::create_stripe(
            stripe(StripeConfig {
                secret_key: config.stripe_secret_key,
                network_id: config.network_id,
                payment_method_types: &["card"],
                currency,
                // Every currency the storefront prices in has two decimals (money.rs).
                decimals: 2,
            })
            .secret_key(config.hmac_secret)
            .realm(config.realm)
            .stripe_api_base(config.stripe_api_base),
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            mpp,
            currency: config.currency.clone(),
        })
    }

    /// The amount in the crate's notation (major units with a decimal point).
    fn amount(&self, charge: &MppCharge) -> Result<String, MppRejection> {
        if charge.currency != self.currency.as_str() {
            return Err(MppRejection {
                problem: MppProblem::InvalidChallenge,
                reason: format!("MPP payments are taken in {} only.", self.currency),
                retryable: false,
            });
        }
        Ok(display_minor(charge.amount_minor, &self.currency)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned())
    }
}

fn rejection(e: VerificationError) -> MppRejection {
    use mpp::ErrorCode;
    let problem = match e.code {
        Some(ErrorCode::InvalidChallenge) => MppProblem::InvalidChallenge,
        Some(ErrorCode::Expired) => MppProblem::PaymentExpired,
        Some(ErrorCode::InvalidCredential | ErrorCode::InvalidPayload) => {
            MppProblem::MalformedCredential
        }
        _ => MppProblem::VerificationFailed,
    };
    MppRejection {
        problem,
        reason: e.message,
        retryable: e.retryable,
    }
}

fn malformed(reason: impl Into<String>) -> MppRejection {
    MppRejection {
        problem: MppProblem::MalformedCredential,
        reason: reason.into(),
        retryable: false,
    }
}

#[async_trait]
impl MppGateway for StripeMpp {
    fn challenge(&self, charge: &MppCharge) -> Result<String, GatewayError> {
        let failed = |detail: String| GatewayError {
            message: "The payment challenge could not be made.".into(),
            detail,
        };
        let amount = self.amount(charge).map_err(|e| failed(e.reason))?;
        let expires = charge
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let challenge = self
            .mpp
            .stripe_charge_with_options_and_body(
                &amount,
                StripeChargeOptions {
                    description: Some(&charge.description),
                    external_id: Some(&charge.order_id),
                    expires: Some(&expires),
                    ..StripeChargeOptions::default()
                },
                &charge.body,
            )
            .map_err(|e| failed(e.to_string()))?;
        challenge.to_header().map_err(|e| failed(e.to_string()))
    }

    fn inspect(&self, credential: &str) -> Result<MppCredential, MppRejection> {
        let parsed = mpp::parse_authorization(credential).map_err(|e| malformed(e.to_string()))?;
        let expires_at = match parsed.challenge.expires.as_deref() {
            Some(raw) => Some(
                chrono::DateTime::parse_from_rfc3339(raw)
                    .map_err(|_| malformed("The challenge's expires is not an RFC 3339 time."))?
                    .with_timezone(&chrono::Utc),
            ),
            None => None,
        };
        Ok(MppCredential {
            challenge_id: parsed.challenge.id,
            expires_at,
        })
    }

    async fn settle(
        &self,
        credential: &str,
        charge: &MppCharge,
    ) -> Result<MppSettlement, MppRejection> {
        let parsed: PaymentCredential =
            mpp::parse_authorization(credential).map_err(|e| malformed(e.to_string()))?;
        let amount = self.amount(charge)?;
        let expected = self
            .mpp
            .stripe_expected_charge_request(
                &amount,
                StripeChargeOptions {
                    description: Some(&charge.description),
                    external_id: Some(&charge.order_id),
                    ..StripeChargeOptions::default()
                },
            )
            .map_err(|e| MppRejection {
                problem: MppProblem::VerificationFailed,
                reason: e.to_string(),
                retryable: false,
            })?;
        let receipt = self
            .mpp
            .broadcast_credential_with_expected_request_and_body(&parsed, &expected, &charge.body)
            .await
            .map_err(rejection)?;
        let header = receipt.to_header().map_err(|e| MppRejection {
            problem: MppProblem::VerificationFailed,
            reason: e.to_string(),
            retryable: false,
        })?;
        Ok(MppSettlement {
            payment_reference: receipt.reference.clone(),
            receipt: header,
        })
    }
}
