//! The owner dashboard's own use-cases: signing in (with an owner key, or a one-time code the
//! operator prints) to a browser session, and the spending summary of the overview page.
//! Everything else the dashboard does goes through the same `App` methods as the API, with the
//! session's owner principal.

use crate::agents::spent_since;
use crate::app::{store_failure, App};
use crate::principal::Principal;
use crate::secrets::{constant_time_eq, hash_secret, random_token};
use chrono::Duration;
use storefront_domain::account::{DashboardSession, LoginCode};
use storefront_domain::agent::{Agent, AgentStatus};
use storefront_domain::governance::Period;
use storefront_domain::ids::AccountId;
use storefront_domain::timestamp::Timestamp;
use storefront_domain::{DomainError, ErrorCode};

/// How long a printed login code can be used.
pub const LOGIN_CODE_TTL_SECONDS: i64 = 600;
/// How long a dashboard session lasts before the owner signs in again.
pub const SESSION_TTL_SECONDS: i64 = 12 * 3600;
pub const LOGIN_CODE_PREFIX: &str = "sf_login_";
const SESSION_PREFIX: &str = "sf_sess_";

/// A login code as printed once by `storefront admin login-code`.
#[derive(Debug, Clone)]
pub struct IssuedLoginCode {
    pub code: String,
    pub expires_at: Timestamp,
}

/// A new session: the cookie value (shown to the browser once) and when it ends.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    pub secret: String,
    pub expires_at: Timestamp,
}

/// A signed-in browser: who it acts as, and the token its forms must echo (CSRF).
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub principal: Principal,
    pub csrf_token: String,
}

impl SessionCaller {
    /// Whether a form's token is this session's. Compared in constant time.
    pub fn csrf_matches(&self, token: &str) -> bool {
        constant_time_eq(&self.csrf_token, token)
    }
}

/// One agent's spending for the overview page.
#[derive(Debug, Clone)]
pub struct AgentSpending {
    pub agent_id: String,
    pub name: String,
    pub status: AgentStatus,
    pub today_minor: i64,
    pub month_minor: i64,
}

fn bad_credential() -> DomainError {
    DomainError::new(
        ErrorCode::Unauthorized,
        "That owner key or login code is not valid (unknown, revoked, used or expired).",
        "Paste an owner key (sf_live_...) or run `storefront admin login-code --account <id>` for a new code.",
    )
}

/// The CSRF token of a session: derived from its secret, so it is never stored and changes with
/// every session, yet a page can be rendered on any replica.
fn csrf_token(secret: &str) -> String {
    hash_secret(&format!("csrf:{secret}"))
}

impl App {
    /// `storefront admin login-code`: a one-time sign-in code for the account's dashboard.
    pub async fn admin_login_code(&self, account: &str) -> Result<IssuedLoginCode, DomainError> {
        let not_found = || DomainError::not_found("account", account);
        let account_id = AccountId::parse(account).ok_or_else(not_found)?;
        self.store
            .get_account(&account_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        let code = format!("{LOGIN_CODE_PREFIX}{}", random_token());
        let now = self.clock.now();
        let expires_at = now + Duration::seconds(LOGIN_CODE_TTL_SECONDS);
        self.store
            .insert_login_code(&LoginCode {
                code_hash: hash_secret(&code),
                account_id: account_id.clone(),
                created_at: now,
                expires_at,
                used_at: None,
            })
            .await
            .map_err(store_failure)?;
        tracing::info!(account_id = %account_id, "dashboard login code issued");
        Ok(IssuedLoginCode { code, expires_at })
    }

    /// Opens a dashboard session for an owner key or an unused, unexpired login code.
    pub async fn dashboard_sign_in(&self, credential: &str) -> Result<OpenedSession, DomainError> {
        let credential = credential.trim();
        if credential.is_empty() {
            return Err(DomainError::validation(
                "credential",
                "Enter an owner key or a login code.",
                "Paste an owner key (sf_live_...) or a code from `storefront admin login-code`.",
            ));
        }
        let now = self.clock.now();
        let (account_id, key_id) = if credential.starts_with(LOGIN_CODE_PREFIX) {
            let hash = hash_secret(credential);
            let code = self
                .store
                .find_login_code(&hash)
                .await
                .map_err(store_failure)?
                .filter(|c| c.used_at.is_none() && c.expires_at > now)
                .ok_or_else(bad_credential)?;
            // Used exactly once, also when two browsers race with the same code.
            if !self
                .store
                .use_login_code(&hash, now)
                .await
                .map_err(store_failure)?
            {
                return Err(bad_credential());
            }
            (code.account_id, None)
        } else {
            match self.authenticate(credential).await {
                Ok(Principal::Owner { account_id, key_id }) => (account_id, key_id),
                Ok(Principal::Agent { .. }) => return Err(DomainError::forbidden(
                    "Agent keys cannot sign in to the dashboard; it is for the account's owner.",
                )),
                _ => return Err(bad_credential()),
            }
        };
        let secret = format!("{SESSION_PREFIX}{}", random_token());
        let expires_at = now + Duration::seconds(SESSION_TTL_SECONDS);
        self.store
            .insert_dashboard_session(&DashboardSession {
                secret_hash: hash_secret(&secret),
                account_id: account_id.clone(),
                key_id,
                created_at: now,
                expires_at,
                ended_at: None,
            })
            .await
            .map_err(store_failure)?;
        tracing::info!(account_id = %account_id, "dashboard session opened");
        Ok(OpenedSession { secret, expires_at })
    }

    /// The caller behind a session cookie: `401` when it is unknown, ended, expired, or was opened
    /// with an owner key that has since been revoked.
    pub async fn dashboard_session(&self, secret: &str) -> Result<SessionCaller, DomainError> {
        if !secret.starts_with(SESSION_PREFIX) || secret.len() > 200 {
            return Err(DomainError::unauthorized());
        }
        let hash = hash_secret(secret);
        let now = self.clock.now();
        let session = self
            .store
            .find_dashboard_session(&hash)
            .await
            .map_err(store_failure)?
            .filter(|s| {
                constant_time_eq(&s.secret_hash, &hash)
                    && s.ended_at.is_none()
                    && s.expires_at > now
            })
            .ok_or_else(DomainError::unauthorized)?;
        if let Some(key_id) = &session.key_id {
            let live = self
                .store
                .get_api_key(key_id)
                .await
                .map_err(store_failure)?
                .is_some_and(|k| k.account_id == session.account_id && k.revoked_at.is_none());
            if !live {
                return Err(DomainError::unauthorized());
            }
        }
        Ok(SessionCaller {
            principal: Principal::Owner {
                account_id: session.account_id,
                key_id: session.key_id,
            },
            csrf_token: csrf_token(secret),
        })
    }

    /// Ends a session (sign-out). Unknown secrets are ignored: the browser is signed out either way.
    pub async fn dashboard_sign_out(&self, secret: &str) -> Result<(), DomainError> {
        self.store
            .end_dashboard_session(&hash_secret(secret), self.clock.now())
            .await
            .map_err(store_failure)
    }

    /// Each agent's spending today and this month (UTC), as the budget rules count it.
    pub async fn spending_by_agent(
        &self,
        principal: &Principal,
    ) -> Result<Vec<AgentSpending>, DomainError> {
        let mut out = Vec::new();
        for agent in self.list_agents(principal).await? {
            out.push(self.spending_of(&agent).await?);
        }
        Ok(out)
    }

    /// One agent's spending today and this month (UTC); the caller has already fetched the agent
    /// under its principal.
    pub async fn spending_of(&self, agent: &Agent) -> Result<AgentSpending, DomainError> {
        let now = self.clock.now();
        let day = Period::Day.start(now);
        let month = Period::Month.start(now);
        let spending = self
            .store
            .agent_spending(&agent.id, day.min(month))
            .await
            .map_err(store_failure)?;
        Ok(AgentSpending {
            agent_id: agent.id.to_string(),
            name: agent.name.clone(),
            status: agent.status,
            today_minor: spent_since(&spending, day),
            month_minor: spent_since(&spending, month),
        })
    }
}
