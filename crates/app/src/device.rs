//! Customer-agent tokens (docs/api.md, "Customer-agent tokens"): the OAuth 2.0 Device Authorization
//! Grant (RFC 8628). An agent asks for access to a customer's account by e-mail; the account's
//! owner approves the short user code (dashboard, or the owner endpoint); the agent's polling then
//! receives an agent key for a new agent with default rules. Polling faster than `interval` is
//! `slow_down` (and the interval grows by five seconds, as the RFC says).

use crate::accounts::CreatedKey;
use crate::agents::{AgentInput, RuleInput};
use crate::app::{store_failure, App};
use crate::principal::Principal;
use crate::secrets::{hash_secret, random_token};
use serde::Serialize;
use serde_json::json;
use storefront_domain::account::parse_email;
use storefront_domain::agent::DeviceGrant;
use storefront_domain::{DomainError, ErrorCode};

const DEVICE_CODE_TTL_SECONDS: i64 = 600;
const POLL_INTERVAL_SECONDS: i64 = 5;
/// RFC 8628 §6.1: consonants only, so codes spell no words and are easy to type.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceAuthorization {
    /// A bearer secret for the token endpoint; shown once.
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceToken {
    /// An agent key (sf_live_...); shown once.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub agent_id: String,
}

fn user_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut code: String = (0..8)
        .map(|_| USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())] as char)
        .collect();
    code.insert(4, '-');
    code
}

fn token_error(code: ErrorCode, message: &str, suggestion: &str) -> DomainError {
    DomainError::new(code, message, suggestion)
}

impl App {
    /// `POST /api/v1/agent-auth/device`.
    pub async fn device_authorize(
        &self,
        customer_email: &str,
        agent_name: &str,
    ) -> Result<DeviceAuthorization, DomainError> {
        let email = parse_email(customer_email).ok_or_else(|| {
            DomainError::validation(
                "customer_email",
                format!("'{customer_email}' is not an e-mail address."),
                "Send the customer's account e-mail, like owner@example.com.",
            )
        })?;
        let name = agent_name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(DomainError::validation(
                "agent_name",
                "agent_name must be 1-200 printable characters.",
                "Name the agent as the customer will see it.",
            ));
        }
        let now = self.clock.now();
        let device_code = format!("sf_dev_{}", random_token());
        let grant = DeviceGrant {
            device_code_hash: hash_secret(&device_code),
            user_code: user_code(),
            customer_email: email,
            agent_name: name.to_owned(),
            status: "pending".into(),
            account_id: None,
            agent_id: None,
            interval_seconds: POLL_INTERVAL_SECONDS,
            last_polled_at: None,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(DEVICE_CODE_TTL_SECONDS),
        };
        self.store
            .insert_device_grant(&grant)
            .await
            .map_err(store_failure)?;
        let base = &self.settings.base_url;
        Ok(DeviceAuthorization {
            device_code,
            verification_uri: format!("{base}/dashboard/device"),
            verification_uri_complete: format!(
                "{base}/dashboard/device?user_code={}",
                grant.user_code
            ),
            user_code: grant.user_code,
            expires_in: DEVICE_CODE_TTL_SECONDS,
            interval: POLL_INTERVAL_SECONDS,
        })
    }

    /// The owner approves or denies a user code. Only the owner of the account the agent named
    /// (by e-mail) sees the code; others get `404`.
    pub async fn device_decide(
        &self,
        principal: &Principal,
        user_code: &str,
        approve: bool,
    ) -> Result<(), DomainError> {
        let account_id = principal.require_owner()?.clone();
        let account = self
            .store
            .get_account(&account_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        let normalized = user_code.trim().to_ascii_uppercase();
        let not_found = || DomainError::not_found("user code", &normalized);
        let mut grant = self
            .store
            .find_device_grant_by_user_code(&normalized)
            .await
            .map_err(store_failure)?
            .filter(|g| g.customer_email.eq_ignore_ascii_case(&account.email))
            .ok_or_else(not_found)?;
        if grant.status != "pending" {
            return Err(DomainError::new(
                ErrorCode::InvalidState,
                format!("Code {normalized} is already {}.", grant.status),
                "A code is decided once.",
            ));
        }
        if self.clock.now() >= grant.expires_at {
            return Err(DomainError::new(
                ErrorCode::ExpiredToken,
                format!("Code {normalized} expired."),
                "Ask the agent to start again.",
            ));
        }
        grant.account_id = Some(account_id.clone());
        if approve {
            // The agent and its default rules exist from approval on; its key is minted when the
            // agent collects it.
            let agent = self
                .create_agent(
                    principal,
                    AgentInput {
                        name: Some(grant.agent_name.clone()),
                        description: Some(format!("Connected by device code {normalized}")),
                        requires_confirmation: None,
                    },
                )
                .await?;
            for (kind, params) in [
                ("per_transaction_cap", json!({"max_minor": 10_000})),
                ("budget", json!({"period": "day", "max_minor": 50_000})),
            ] {
                self.create_rule(
                    principal,
                    agent.id.as_str(),
                    RuleInput {
                        kind: Some(kind.into()),
                        name: Some(format!("default {kind}")),
                        action: None,
                        enabled: Some(true),
                        params: Some(params),
                    },
                )
                .await?;
            }
            grant.agent_id = Some(agent.id);
            grant.status = "approved".into();
        } else {
            grant.status = "denied".into();
        }
        if !self
            .store
            .update_device_grant(&grant, "pending")
            .await
            .map_err(store_failure)?
        {
            return Err(DomainError::new(
                ErrorCode::InvalidState,
                format!("Code {normalized} was decided meanwhile."),
                "A code is decided once.",
            ));
        }
        Ok(())
    }

    /// `POST /api/v1/agent-auth/token`: RFC 8628's polling.
    pub async fn device_token(&self, device_code: &str) -> Result<DeviceToken, DomainError> {
        let now = self.clock.now();
        let mut grant = self
            .store
            .find_device_grant(&hash_secret(device_code.trim()))
            .await
            .map_err(store_failure)?
            .ok_or_else(|| {
                token_error(
                    ErrorCode::InvalidGrant,
                    "Unknown device_code.",
                    "Start again with POST /api/v1/agent-auth/device.",
                )
            })?;
        if now >= grant.expires_at && grant.status != "consumed" {
            return Err(token_error(
                ErrorCode::ExpiredToken,
                "The device code expired before the owner approved it.",
                "Start again with POST /api/v1/agent-auth/device.",
            ));
        }
        match grant.status.as_str() {
            "denied" => {
                return Err(token_error(
                    ErrorCode::AccessDenied,
                    "The account owner denied access.",
                    "Ask the customer; do not retry with this code.",
                ))
            }
            "consumed" => {
                return Err(token_error(
                    ErrorCode::InvalidGrant,
                    "This device code was already exchanged for a token.",
                    "Use the token you received; start again for another.",
                ))
            }
            _ => {}
        }
        let too_soon = grant
            .last_polled_at
            .is_some_and(|last| (now - last).num_seconds() < grant.interval_seconds);
        let expected = grant.status.clone();
        grant.last_polled_at = Some(now);
        if too_soon {
            grant.interval_seconds += 5;
            self.store
                .update_device_grant(&grant, &expected)
                .await
                .map_err(store_failure)?;
            return Err(token_error(
                ErrorCode::SlowDown,
                "Polled faster than the interval.",
                "Wait the interval (now five seconds longer) between polls.",
            )
            .with_retry_after(grant.interval_seconds.max(0) as u64));
        }
        if grant.status == "pending" {
            self.store
                .update_device_grant(&grant, "pending")
                .await
                .map_err(store_failure)?;
            return Err(token_error(
                ErrorCode::AuthorizationPending,
                "The account owner has not approved yet.",
                "Poll again after the interval.",
            )
            .with_retry_after(grant.interval_seconds.max(0) as u64));
        }
        // Approved: mint the agent key once.
        grant.status = "consumed".into();
        if !self
            .store
            .update_device_grant(&grant, "approved")
            .await
            .map_err(store_failure)?
        {
            return Err(token_error(
                ErrorCode::InvalidGrant,
                "This device code was already exchanged for a token.",
                "Use the token you received.",
            ));
        }
        let agent_id = grant.agent_id.clone().ok_or_else(DomainError::internal)?;
        let account_id = grant.account_id.clone().ok_or_else(DomainError::internal)?;
        let key: CreatedKey = self.mint_agent_key(&account_id, &agent_id).await?;
        Ok(DeviceToken {
            access_token: key.api_key,
            token_type: "Bearer".into(),
            agent_id: agent_id.to_string(),
        })
    }
}
