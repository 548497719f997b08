//! Accounts, API keys, credits and the operator's administration.

use crate::app::{store_failure, App};
use crate::page::{Page, PageRequest};
use crate::ports::Refusal;
use crate::principal::Principal;
use crate::secrets::{
    constant_time_eq, display_prefix, hash_secret, new_api_key_secret, API_KEY_PREFIX,
};
use serde::Serialize;
use storefront_domain::account::{parse_email, Account, ApiKey, KeyRole};
use storefront_domain::ids::{AccountId, AgentId, KeyId, LedgerEntryId};
use storefront_domain::ledger::{LedgerEntry, LedgerKind, LedgerMovement};
use storefront_domain::money::{display_minor, MAX_AMOUNT_MINOR};
use storefront_domain::{DomainError, ErrorCode};

/// A key as created: the secret is in here exactly once.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    pub key_id: String,
    pub api_key: String,
    pub role: KeyRole,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balance {
    pub credits: i64,
    pub balance_minor: i64,
    pub currency: String,
}

/// What the demo bootstrap made on first start.
pub struct DemoAccount {
    pub account: Account,
    pub api_key: String,
}

pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_CREDITS: i64 = 10_000;

/// The account that owns purchases made without a key is found under this setting.
const PUBLIC_ACCOUNT_SETTING: &str = "public_account_id";
const PUBLIC_ACCOUNT_EMAIL: &str = "public-purchases@storefront.invalid";

impl App {
    /// The account that owns purchases made without an API key (its services, its orders).
    /// Made on first use, once per database however many processes race to make it.
    pub(crate) async fn public_account(&self) -> Result<AccountId, DomainError> {
        if let Some(id) = self.public_account.get() {
            return Ok(id.clone());
        }
        let candidate = AccountId::generate();
        let id = self
            .store
            .setting_or_init(PUBLIC_ACCOUNT_SETTING, candidate.as_str())
            .await
            .map_err(store_failure)?;
        let id = AccountId::parse(&id).ok_or_else(DomainError::internal)?;
        let now = self.clock.now();
        let account = Account {
            id: id.clone(),
            email: PUBLIC_ACCOUNT_EMAIL.into(),
            name: "Purchases without an API key".into(),
            currency: self.settings.account_currency.clone(),
            balance_minor: 0,
            balance_low_minor: None,
            created_at: now,
        };
        // An owner key nobody holds: the operator can issue a real one with `admin create-key`.
        let (key, _) = new_key(&id, KeyRole::Owner, None, "owner".into(), now);
        match self.store.create_account(&account, &key).await {
            Ok(()) | Err(crate::ports::StoreError::Conflict(_)) => {}
            Err(e) => return Err(store_failure(e)),
        }
        let _ = self.public_account.set(id.clone());
        Ok(id)
    }

    /// Turns a bearer secret into a principal. Unknown and revoked keys are `unauthorized`.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal, DomainError> {
        if secret.starts_with(crate::secrets::RESOURCE_TOKEN_PREFIX) && secret.len() <= 200 {
            let hash = hash_secret(secret);
            let token = self
                .store
                .find_resource_token(&hash)
                .await
                .map_err(store_failure)?
                .filter(|t| constant_time_eq(&t.token_hash, &hash))
                .ok_or_else(DomainError::unauthorized)?;
            let scope = crate::principal::TokenScope::parse(&token.scope)
                .ok_or_else(DomainError::internal)?;
            return Ok(Principal::Resource {
                service_id: token.service_id,
                scope,
            });
        }
        if !secret.starts_with(API_KEY_PREFIX) || secret.len() > 200 {
            return Err(DomainError::unauthorized());
        }
        let hash = hash_secret(secret);
        let now = self.clock.now();
        if let Some(principal) = self.key_cache.get(&hash, now) {
            return Ok(principal);
        }
        let generation = self.key_cache.generation();
        let key = self
            .store
            .find_api_key_by_hash(&hash)
            .await
            .map_err(store_failure)?
            .filter(|k| constant_time_eq(&k.secret_hash, &hash) && k.revoked_at.is_none())
            .ok_or_else(DomainError::unauthorized)?;
        let principal = match key.role {
            KeyRole::Owner => Principal::Owner {
                account_id: key.account_id,
                key_id: Some(key.id),
            },
            KeyRole::Agent => Principal::Agent {
                account_id: key.account_id,
                key_id: key.id,
                agent_id: key.agent_id,
            },
        };
        self.key_cache.remember(hash, &principal, now, generation);
        Ok(principal)
    }

    pub async fn account(&self, principal: &Principal) -> Result<Account, DomainError> {
        let id = principal.require_account()?;
        self.store
            .get_account(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| DomainError::not_found("account", id.as_str()))
    }

    /// `PATCH /api/v1/account`: the balance below which a `balance.low` event is written
    /// (`None` turns it off). Owner keys only.
    pub async fn set_balance_low_threshold(
        &self,
        principal: &Principal,
        threshold_minor: Option<i64>,
    ) -> Result<Account, DomainError> {
        let id = principal.require_owner()?;
        if let Some(t) = threshold_minor {
            if !(1..=storefront_domain::money::MAX_AMOUNT_MINOR).contains(&t) {
                return Err(DomainError::validation(
                    "balance_low_minor",
                    format!("{t} is not a usable threshold."),
                    "Give a positive amount in minor units (500 = 5.00), or null to turn balance.low off.",
                ));
            }
        }
        self.store
            .set_balance_low_threshold(id, threshold_minor)
            .await
            .map_err(store_failure)?;
        self.account(principal).await
    }

    pub async fn balance(&self, principal: &Principal) -> Result<Balance, DomainError> {
        let account = self.account(principal).await?;
        Ok(Balance {
            credits: account.balance_minor,
            balance_minor: account.balance_minor,
            currency: account.currency.to_string(),
        })
    }

    pub async fn ledger(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, DomainError> {
        let account = principal.require_account()?;
        if let Some(c) = &page.cursor {
            if LedgerEntryId::parse(c).is_none() {
                return Err(PageRequest::invalid_cursor());
            }
        }
        let entries = self
            .store
            .list_ledger(account, page)
            .await
            .map_err(store_failure)?;
        Ok(Page::from_fetched(
            entries,
            page.limit,
            |e: &LedgerEntry| e.id.to_string(),
        ))
    }

    pub async fn list_api_keys(&self, principal: &Principal) -> Result<Vec<ApiKey>, DomainError> {
        let account = principal.require_owner()?;
        self.store
            .list_api_keys(account)
            .await
            .map_err(store_failure)
    }

    pub async fn create_api_key(
        &self,
        principal: &Principal,
        role: KeyRole,
        name: Option<String>,
    ) -> Result<CreatedKey, DomainError> {
        let account = principal.require_owner()?.clone();
        self.issue_key(&account, role, None, name).await
    }

    pub async fn revoke_api_key(
        &self,
        principal: &Principal,
        key_id: &str,
    ) -> Result<(), DomainError> {
        let account = principal.require_owner()?;
        let not_found = || DomainError::not_found("API key", key_id);
        let id = KeyId::parse(key_id).ok_or_else(not_found)?;
        let revoked = self
            .store
            .revoke_api_key(account, &id, self.clock.now())
            .await;
        // Even after an error: the revocation may have committed.
        self.key_cache.forget_all();
        if revoked.map_err(store_failure)? {
            tracing::info!(key_id = %id, "API key revoked");
            Ok(())
        } else {
            Err(not_found())
        }
    }

    async fn issue_key(
        &self,
        account: &AccountId,
        role: KeyRole,
        agent: Option<AgentId>,
        name: Option<String>,
    ) -> Result<CreatedKey, DomainError> {
        let name = validate_key_name(name)?;
        let (key, secret) = new_key(account, role, agent, name, self.clock.now());
        self.store
            .insert_api_key(&key)
            .await
            .map_err(store_failure)?;
        tracing::info!(key_id = %key.id, role = role.as_str(), "API key created");
        Ok(CreatedKey {
            key_id: key.id.to_string(),
            api_key: secret,
            role,
            name: key.name,
        })
    }

    // ----- operator administration (the `storefront admin` commands) -----

    /// Creates an account and its first owner key.
    pub async fn admin_create_account(
        &self,
        email: &str,
        name: &str,
    ) -> Result<(Account, CreatedKey), DomainError> {
        let email = parse_email(email).ok_or_else(|| {
            DomainError::validation(
                "email",
                format!("'{email}' is not a valid e-mail address."),
                "Use an address like owner@example.com.",
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(DomainError::validation(
                "name",
                "The account name must be 1-200 characters.",
                "Give the account a short name.",
            ));
        }
        let now = self.clock.now();
        let account = Account {
            id: AccountId::generate(),
            email,
            name: name.to_owned(),
            currency: self.settings.account_currency.clone(),
            balance_minor: 0,
            balance_low_minor: None,
            created_at: now,
        };
        let (key, secret) = new_key(&account.id, KeyRole::Owner, None, "owner".into(), now);
        self.store
            .create_account(&account, &key)
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::Conflict(_) => DomainError::validation(
                    "email",
                    format!("An account with e-mail {} already exists.", account.email),
                    "Use another e-mail address, or create a key for the existing account.",
                ),
                other => store_failure(other),
            })?;
        tracing::info!(account_id = %account.id, "account created");
        let created = CreatedKey {
            key_id: key.id.to_string(),
            api_key: secret,
            role: KeyRole::Owner,
            name: key.name,
        };
        Ok((account, created))
    }

    /// Credits (or, with a negative amount, debits as an adjustment) an account.
    pub async fn admin_grant_credits(
        &self,
        account: &str,
        amount_minor: i64,
        reason: &str,
    ) -> Result<LedgerEntry, DomainError> {
        let account = self.existing_account(account).await?;
        if amount_minor == 0 || amount_minor.abs() > MAX_AMOUNT_MINOR {
            return Err(DomainError::validation(
                "amount_minor",
                format!("{amount_minor} is not a valid amount."),
                format!("Use a non-zero amount of at most {MAX_AMOUNT_MINOR} minor units."),
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(DomainError::validation(
                "reason",
                "The reason must be 1-500 characters.",
                "Say why the credits are granted.",
            ));
        }
        let movement = LedgerMovement {
            account_id: account.id,
            kind: if amount_minor > 0 {
                LedgerKind::TopUp
            } else {
                LedgerKind::Adjustment
            },
            amount_minor,
            order_id: None,
            description: reason.to_owned(),
        };
        self.store
            .record_movement(&movement, self.clock.now())
            .await
            .map_err(store_failure)?
            .map_err(|refused| match refused {
                Refusal::InsufficientCredits { balance_minor } => DomainError::new(
                    ErrorCode::InsufficientCredits,
                    format!(
                        "The balance is {}; the adjustment would take it below zero.",
                        display_minor(balance_minor, &account.currency)
                    ),
                    "Use a smaller adjustment.",
                ),
                // A grant or adjustment is not an agent's purchase: no budget applies.
                Refusal::BudgetExceeded { .. } => DomainError::internal(),
            })
    }

    pub async fn admin_create_key(
        &self,
        account: &str,
        role: KeyRole,
        agent: Option<&str>,
    ) -> Result<CreatedKey, DomainError> {
        let account_id = self.existing_account(account).await?.id;
        match (role, agent) {
            // An agent key belongs to an agent: it acts within that agent's rules.
            (KeyRole::Agent, None) => Err(DomainError::validation(
                "agent",
                "An agent key belongs to an agent.",
                "Name the agent with --agent AGENT_ID (create one in the dashboard or with POST /api/v1/agents).",
            )),
            (KeyRole::Agent, Some(agent)) => {
                let agent_id = storefront_domain::ids::AgentId::parse(agent).ok_or_else(|| {
                    DomainError::not_found("agent", agent).with_param("agent")
                })?;
                self.mint_agent_key(&account_id, &agent_id)
                    .await
                    .map_err(|e| e.with_param("agent"))
            }
            (_, Some(_)) => Err(DomainError::validation(
                "agent",
                "Only agent keys name an agent.",
                "Omit --agent for an owner key, or pass --role agent.",
            )),
            (_, None) => {
                self.issue_key(&account_id, role, None, Some(role.as_str().to_owned()))
                    .await
            }
        }
    }

    pub async fn admin_list_accounts(&self) -> Result<Vec<Account>, DomainError> {
        self.store.list_accounts().await.map_err(store_failure)
    }

    async fn existing_account(&self, raw: &str) -> Result<Account, DomainError> {
        let not_found = || DomainError::not_found("account", raw).with_param("account");
        let id = AccountId::parse(raw).ok_or_else(not_found)?;
        self.store
            .get_account(&id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)
    }

    /// On the very first start (no accounts at all), creates a demo account with credits so the
    /// first purchase works with nothing else set up.
    pub async fn ensure_demo_account(&self) -> Result<Option<DemoAccount>, DomainError> {
        if self.store.count_accounts().await.map_err(store_failure)? > 0 {
            return Ok(None);
        }
        let (account, key) = match self.admin_create_account(DEMO_EMAIL, "Demo account").await {
            Ok(created) => created,
            // Another replica starting at the same moment made it first.
            Err(e) if e.param.as_deref() == Some("email") => return Ok(None),
            Err(e) => return Err(e),
        };
        let entry = self
            .admin_grant_credits(account.id.as_str(), DEMO_CREDITS, "demo credits")
            .await?;
        let account = Account {
            balance_minor: entry.balance_after_minor,
            ..account
        };
        Ok(Some(DemoAccount {
            account,
            api_key: key.api_key,
        }))
    }
}

fn validate_key_name(name: Option<String>) -> Result<String, DomainError> {
    let name = name
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|| "api key".into());
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(DomainError::validation(
            "name",
            "A key name must be 1-100 printable characters.",
            "Give the key a short label such as \"ci\".",
        ));
    }
    Ok(name)
}

pub(crate) fn new_key(
    account: &AccountId,
    role: KeyRole,
    agent: Option<AgentId>,
    name: String,
    now: storefront_domain::timestamp::Timestamp,
) -> (ApiKey, String) {
    let secret = new_api_key_secret();
    let key = ApiKey {
        id: KeyId::generate(),
        account_id: account.clone(),
        role,
        agent_id: agent,
        name,
        prefix: display_prefix(&secret),
        secret_hash: hash_secret(&secret),
        created_at: now,
        revoked_at: None,
    };
    (key, secret)
}
