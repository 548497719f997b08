//! Agents and their rules (docs/api.md, "Governance"): the owner creates agents, gives them keys
//! and rules; an agent key asks `check` before spending elsewhere, and the storefront's own orders
//! placed with an agent key pass the same rules engine (`storefront_domain::governance`).

use crate::accounts::{new_key, CreatedKey};
use crate::app::{store_failure, App};
use crate::machines::MachinesHeld;
use crate::ports::{AgentRule, Applied, BudgetGuard, StoreError};
use crate::principal::Principal;
use serde::Serialize;
use serde_json::Value;
use storefront_domain::account::KeyRole;
use storefront_domain::agent::{Agent, AgentStatus};
use storefront_domain::catalog::Product;
use storefront_domain::event::{Event, EventType};
use storefront_domain::governance::{
    evaluate, Context, Decision, Period, Rule, RuleAction, RuleKind, Transaction, Verdict,
};
use storefront_domain::ids::{AgentId, RuleId};
use storefront_domain::money::MAX_AMOUNT_MINOR;
use storefront_domain::timestamp::format;
use storefront_domain::{DomainError, ErrorCode};

/// What an owner sends to create or change an agent.
#[derive(Debug, Clone, Default)]
pub struct AgentInput {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Whether the agent's first connection waits for the owner's confirmation.
    pub requires_confirmation: Option<bool>,
}

/// What an agent says of itself on `POST /api/v1/agent/connect` (docs/api.md, "Agents").
#[derive(Debug, Clone, Default)]
pub struct ConnectInput {
    pub agent_name: Option<String>,
    pub agent_type: Option<String>,
    pub platform: Option<String>,
    pub capabilities: Vec<String>,
}

/// The agent's view of itself and its boundaries after connecting.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    pub agent: Agent,
    /// Whether this call made the first connection (`201`).
    pub first_connection: bool,
    pub rules: Vec<RuleView>,
}

/// What an owner sends to create or change a rule.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub action: Option<String>,
    pub enabled: Option<bool>,
    pub params: Option<Value>,
}

/// A rule as the doors show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleView {
    pub id: String,
    /// `SF-001` style display code.
    pub code: String,
    pub name: String,
    pub kind: String,
    pub action: RuleAction,
    pub enabled: bool,
    pub params: Value,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&AgentRule> for RuleView {
    fn from(r: &AgentRule) -> Self {
        Self {
            id: r.rule.id.clone(),
            code: r.rule.code.clone(),
            name: r.rule.name.clone(),
            kind: r.rule.kind.name().to_owned(),
            action: r.rule.action,
            enabled: r.rule.enabled,
            params: r.rule.kind.params(),
            created_at: format(&r.created_at),
            updated_at: format(&r.updated_at),
        }
    }
}

/// The answer of `POST /api/v1/agent/check`: allow, deny or escalate.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// `allow`, `deny` or `escalate`.
    pub result: String,
    pub rule_id: Option<String>,
    pub rule_name: Option<String>,
    pub reason: String,
    pub approval_required: Option<ApprovalRequirement>,
    pub evaluated_rules: usize,
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalRequirement {
    /// Who approves, numbered from 1, the account's owner.
    pub tier: u8,
    /// How the approver is asked: `notification`.
    pub method: String,
    /// Seconds the owner has to decide.
    pub timeout: u32,
}

fn text(
    param: &str,
    raw: Option<String>,
    max: usize,
    required: bool,
) -> Result<Option<String>, DomainError> {
    match raw.map(|s| s.trim().to_owned()) {
        None if required => Err(DomainError::validation(
            param,
            format!("{param} is required."),
            format!("Send {param} as a string of 1-{max} characters."),
        )),
        None => Ok(None),
        Some(s) if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) => {
            Err(DomainError::validation(
                param,
                format!("{param} must be 1-{max} printable characters."),
                format!("Send a shorter {param}."),
            ))
        }
        Some(s) => Ok(Some(s)),
    }
}

fn stores(param: &str, raw: Vec<String>) -> Result<Vec<String>, DomainError> {
    if raw.len() > 1000 {
        return Err(DomainError::validation(
            param,
            "At most 1000 stores per list.",
            "Keep the list short.",
        ));
    }
    raw.into_iter()
        .map(|d| {
            let d = d.trim().to_ascii_lowercase();
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.contains('.')
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if ok {
                Ok(d)
            } else {
                Err(DomainError::validation(
                    param,
                    format!("'{d}' is not a domain name."),
                    "List stores by domain, like shop.example.",
                ))
            }
        })
        .collect()
}

impl App {
    /// An agent of the owner's account; other accounts' agents do not exist for it.
    async fn owned_agent(&self, principal: &Principal, id: &str) -> Result<Agent, DomainError> {
        let account = principal.require_owner()?;
        let not_found = || DomainError::not_found("agent", id);
        let agent_id = AgentId::parse(id).ok_or_else(not_found)?;
        self.store
            .get_agent(&agent_id)
            .await
            .map_err(store_failure)?
            .filter(|a| &a.account_id == account)
            .ok_or_else(not_found)
    }

    pub async fn create_agent(
        &self,
        principal: &Principal,
        input: AgentInput,
    ) -> Result<Agent, DomainError> {
        let account = principal.require_owner()?.clone();
        let now = self.clock.now();
        let agent = Agent {
            id: AgentId::generate(),
            account_id: account,
            name: text("name", input.name, 200, true)?.unwrap_or_default(),
            description: text("description", input.description, 2000, false)?.unwrap_or_default(),
            status: AgentStatus::Active,
            soul: String::new(),
            trusted_stores: Vec::new(),
            blocked_stores: Vec::new(),
            requires_confirmation: input.requires_confirmation.unwrap_or(false),
            agent_type: None,
            platform: None,
            capabilities: Vec::new(),
            connected_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_agent(&agent)
            .await
            .map_err(store_failure)?;
        Ok(agent)
    }

    pub async fn list_agents(&self, principal: &Principal) -> Result<Vec<Agent>, DomainError> {
        let account = principal.require_owner()?;
        self.store.list_agents(account).await.map_err(store_failure)
    }

    pub async fn get_agent(&self, principal: &Principal, id: &str) -> Result<Agent, DomainError> {
        self.owned_agent(principal, id).await
    }

    pub async fn update_agent(
        &self,
        principal: &Principal,
        id: &str,
        input: AgentInput,
    ) -> Result<Agent, DomainError> {
        let mut agent = self.owned_agent(principal, id).await?;
        if let Some(name) = text("name", input.name, 200, false)? {
            agent.name = name;
        }
        if let Some(description) = text("description", input.description, 2000, false)? {
            agent.description = description;
        }
        if let Some(confirm) = input.requires_confirmation {
            agent.requires_confirmation = confirm;
        }
        self.save_agent(agent).await
    }

    async fn save_agent(&self, agent: Agent) -> Result<Agent, DomainError> {
        self.save_agent_with_event(agent, None).await
    }

    /// Saves the agent and, in the same transaction, the event `kind` with its new state.
    async fn save_agent_with_event(
        &self,
        mut agent: Agent,
        kind: Option<EventType>,
    ) -> Result<Agent, DomainError> {
        agent.updated_at = self.clock.now();
        let events: Vec<Event> = kind
            .map(|kind| {
                Event::new(
                    kind,
                    agent.account_id.clone(),
                    Some(agent.id.clone()),
                    serde_json::to_value(&agent).unwrap_or_default(),
                    agent.updated_at,
                )
            })
            .into_iter()
            .collect();
        if !self
            .store
            .update_agent(&agent, &events)
            .await
            .map_err(store_failure)?
        {
            return Err(DomainError::not_found("agent", agent.id.as_str()));
        }
        Ok(agent)
    }

    /// Deletes the agent; its keys stop working at once.
    pub async fn delete_agent(&self, principal: &Principal, id: &str) -> Result<(), DomainError> {
        let agent = self.owned_agent(principal, id).await?;
        let deleted = self.store.delete_agent(&agent.id, self.clock.now()).await;
        // Even after an error: the deletion may have committed.
        self.key_cache.forget_all();
        deleted.map_err(store_failure)?;
        Ok(())
    }

    /// `PUT /api/v1/agents/{id}/soul`: the owner's Markdown instructions.
    pub async fn set_soul(
        &self,
        principal: &Principal,
        id: &str,
        soul: String,
    ) -> Result<Agent, DomainError> {
        if soul.len() > 100_000 {
            return Err(DomainError::validation(
                "soul",
                "The soul is over 100 KB.",
                "Keep the instructions short.",
            ));
        }
        let mut agent = self.owned_agent(principal, id).await?;
        agent.soul = soul;
        self.save_agent(agent).await
    }

    /// `PUT /api/v1/agents/{id}/stores`.
    pub async fn set_stores(
        &self,
        principal: &Principal,
        id: &str,
        trusted: Vec<String>,
        blocked: Vec<String>,
    ) -> Result<Agent, DomainError> {
        let trusted = stores("trusted", trusted)?;
        let blocked = stores("blocked", blocked)?;
        if let Some(both) = trusted.iter().find(|d| blocked.contains(d)) {
            return Err(DomainError::validation(
                "blocked",
                format!("'{both}' is both trusted and blocked."),
                "Remove it from one of the lists.",
            ));
        }
        let mut agent = self.owned_agent(principal, id).await?;
        agent.trusted_stores = trusted;
        agent.blocked_stores = blocked;
        self.save_agent(agent).await
    }

    /// `POST /api/v1/agents/{id}/keys`: an agent key, shown once.
    pub async fn create_agent_key(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<CreatedKey, DomainError> {
        let agent = self.owned_agent(principal, id).await?;
        self.mint_agent_key(&agent.account_id, &agent.id).await
    }

    /// A new key for an agent of the account; the secret is in the answer only.
    pub(crate) async fn mint_agent_key(
        &self,
        account_id: &storefront_domain::ids::AccountId,
        agent_id: &AgentId,
    ) -> Result<CreatedKey, DomainError> {
        let agent = self
            .store
            .get_agent(agent_id)
            .await
            .map_err(store_failure)?
            .filter(|a| &a.account_id == account_id)
            .ok_or_else(|| DomainError::not_found("agent", agent_id.as_str()))?;
        let (key, secret) = new_key(
            &agent.account_id,
            KeyRole::Agent,
            Some(agent.id.clone()),
            format!("agent {}", agent.name),
            self.clock.now(),
        );
        self.store
            .insert_api_key(&key)
            .await
            .map_err(store_failure)?;
        Ok(CreatedKey {
            key_id: key.id.to_string(),
            api_key: secret,
            role: KeyRole::Agent,
            name: key.name,
        })
    }

    pub async fn list_rules(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Vec<RuleView>, DomainError> {
        let agent = self.owned_agent(principal, id).await?;
        let rules = self
            .store
            .list_rules(&agent.id)
            .await
            .map_err(store_failure)?;
        Ok(rules.iter().map(RuleView::from).collect())
    }

    pub async fn create_rule(
        &self,
        principal: &Principal,
        id: &str,
        input: RuleInput,
    ) -> Result<RuleView, DomainError> {
        let agent = self.owned_agent(principal, id).await?;
        let kind_name = input.kind.ok_or_else(|| {
            DomainError::validation(
                "kind",
                "kind is required.",
                format!("Use one of: {}.", RuleKind::NAMES.join(", ")),
            )
        })?;
        let kind = RuleKind::parse(&kind_name, &input.params.unwrap_or(Value::Null))?;
        let action = parse_action(input.action.as_deref(), &kind)?;
        let name = text("name", input.name, 200, false)?.unwrap_or_else(|| kind.name().to_owned());
        let now = self.clock.now();
        // Codes count up per agent; two concurrent creates race for one and the loser takes the
        // next (a unique index decides).
        for _ in 0..5 {
            let existing = self
                .store
                .list_rules(&agent.id)
                .await
                .map_err(store_failure)?;
            let next = existing
                .iter()
                .filter_map(|r| r.rule.code.strip_prefix("SF-")?.parse::<u32>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            let rule = AgentRule {
                agent_id: agent.id.clone(),
                rule: Rule {
                    id: RuleId::generate().to_string(),
                    code: format!("SF-{next:03}"),
                    name: name.clone(),
                    enabled: input.enabled.unwrap_or(true),
                    action,
                    kind: kind.clone(),
                },
                created_at: now,
                updated_at: now,
            };
            match self.store.insert_rule(&rule).await {
                Ok(()) => return Ok(RuleView::from(&rule)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_failure(e)),
            }
        }
        Err(DomainError::new(
            ErrorCode::IdempotencyInProgress,
            "Other rules are being created for this agent at the same moment.",
            "Retry in a second.",
        )
        .with_retry_after(1))
    }

    pub async fn update_rule(
        &self,
        principal: &Principal,
        id: &str,
        rule_id: &str,
        input: RuleInput,
    ) -> Result<RuleView, DomainError> {
        let agent = self.owned_agent(principal, id).await?;
        let mut rule = self
            .store
            .list_rules(&agent.id)
            .await
            .map_err(store_failure)?
            .into_iter()
            .find(|r| r.rule.id == rule_id)
            .ok_or_else(|| DomainError::not_found("rule", rule_id))?;
        if let Some(kind) = &input.kind {
            if kind != rule.rule.kind.name() {
                return Err(DomainError::validation(
                    "kind",
                    "A rule's kind cannot change.",
                    "Delete the rule and create one of the other kind.",
                ));
            }
        }
        if let Some(params) = input.params {
            rule.rule.kind = RuleKind::parse(rule.rule.kind.name(), &params)?;
        }
        if input.action.is_some() {
            rule.rule.action = parse_action(input.action.as_deref(), &rule.rule.kind)?;
        }
        if let Some(name) = text("name", input.name, 200, false)? {
            rule.rule.name = name;
        }
        if let Some(enabled) = input.enabled {
            rule.rule.enabled = enabled;
        }
        rule.updated_at = self.clock.now();
        if !self.store.update_rule(&rule).await.map_err(store_failure)? {
            return Err(DomainError::not_found("rule", rule_id));
        }
        Ok(RuleView::from(&rule))
    }

    pub async fn delete_rule(
        &self,
        principal: &Principal,
        id: &str,
        rule_id: &str,
    ) -> Result<(), DomainError> {
        let agent = self.owned_agent(principal, id).await?;
        if !self
            .store
            .delete_rule(&agent.id, rule_id)
            .await
            .map_err(store_failure)?
        {
            return Err(DomainError::not_found("rule", rule_id));
        }
        Ok(())
    }

    /// Refuses every call of a suspended agent's key (the kill switch); other principals pass.
    pub async fn ensure_not_suspended(&self, principal: &Principal) -> Result<(), DomainError> {
        self.acting_agent(principal).await.map(|_| ())
    }

    /// The kill switch: the agent is suspended at once, its orders still waiting (for payment
    /// or approval) are canceled, the resource tokens of its machines stop working and its
    /// running machines are stopped (files kept; the owner may keep them running with
    /// `stop_machines: false`). Pulled by the agent's own key, or by the owner. Answers the
    /// agent, how many open checkouts were canceled, and what happened to its machines.
    pub async fn kill_switch(
        &self,
        principal: &Principal,
        agent_id: Option<&str>,
        reason: Option<String>,
        stop_machines: bool,
    ) -> Result<(Agent, usize, MachinesHeld), DomainError> {
        let mut agent = match (principal, agent_id) {
            (Principal::Agent { .. }, None) => self
                .acting_agent(principal)
                .await?
                .ok_or_else(|| DomainError::forbidden("This key belongs to no agent."))?,
            (_, Some(id)) => self.owned_agent(principal, id).await?,
            _ => {
                return Err(principal.refuse(
                    "Pull the kill switch with the agent's key, or as the owner on /api/v1/agents/{id}/kill-switch.",
                ))
            }
        };
        let reason = reason.map(|r| r.trim().chars().take(1000).collect::<String>());
        agent.status = AgentStatus::Suspended;
        let agent = self
            .save_agent_with_event(agent, Some(EventType::AgentSuspended))
            .await?;
        tracing::warn!(agent_id = %agent.id, reason = ?reason, "kill switch pulled");
        self.audit(
            &agent.account_id,
            Some(&agent.id),
            "kill_switch",
            Some("suspended"),
            None,
            serde_json::json!({"reason": reason, "by": if principal.agent_id().is_some() { "agent" } else { "owner" }, "stop_machines": stop_machines}),
        )
        .await?;
        let machines = self.hold_agent_machines(&agent.id, stop_machines).await?;
        let open_checkouts = self
            .store
            .agent_open_checkouts(&agent.id)
            .await
            .map_err(store_failure)?;
        let canceled_checkouts = open_checkouts.len();
        for checkout in open_checkouts {
            self.cancel_open_checkout(checkout, Some("kill switch".into()))
                .await?;
        }
        let now = self.clock.now();
        for mut order in self
            .store
            .agent_open_orders(&agent.id)
            .await
            .map_err(store_failure)?
        {
            let approval = self
                .store
                .find_approval_for_order(&order.id)
                .await
                .map_err(store_failure)?;
            match approval {
                Some(a) if a.status == storefront_domain::agent::ApprovalStatus::Pending => {
                    self.close(
                        a,
                        storefront_domain::agent::ApprovalStatus::Denied,
                        Some("kill switch".into()),
                    )
                    .await?;
                }
                _ => {
                    let expected = order.status;
                    order.status = storefront_domain::order::OrderStatus::Canceled;
                    order.updated_at = now;
                    let canceled = self.order_events(
                        &[storefront_domain::event::EventType::OrderCanceled],
                        &order,
                    );
                    self.store
                        .apply_change(&crate::ports::Change {
                            order: Some((&order, &[expected])),
                            events: &canceled,
                            ..crate::ports::Change::default()
                        })
                        .await
                        .and_then(Applied::without_charge)
                        .map_err(store_failure)?;
                }
            }
        }
        Ok((agent, canceled_checkouts, machines))
    }

    /// `POST /api/v1/agent/connect`: the agent introduces itself. The first connection of an
    /// agent that requires confirmation leaves it `pending` until the owner activates it.
    pub async fn connect(
        &self,
        principal: &Principal,
        input: ConnectInput,
    ) -> Result<Connection, DomainError> {
        let agent_id = principal
            .agent_id()
            .ok_or_else(|| principal.refuse("Only an agent key connects."))?;
        let mut agent = self
            .store
            .get_agent(agent_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        if agent.status == AgentStatus::Suspended {
            return Err(kill_switch_active(&agent));
        }
        if input.capabilities.len() > 50 {
            return Err(DomainError::validation(
                "capabilities",
                "At most 50 capabilities.",
                "List what the agent does in a few words.",
            ));
        }
        let capabilities = input
            .capabilities
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                text(&format!("capabilities[{i}]"), Some(c), 100, true)
                    .map(Option::unwrap_or_default)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first_connection = agent.connected_at.is_none();
        if let Some(name) = text("agent_name", input.agent_name, 200, false)? {
            agent.name = name;
        }
        agent.agent_type = text("agent_type", input.agent_type, 100, false)?.or(agent.agent_type);
        agent.platform = text("platform", input.platform, 100, false)?.or(agent.platform);
        agent.capabilities = capabilities;
        if first_connection {
            agent.connected_at = Some(self.clock.now());
            if agent.requires_confirmation {
                agent.status = AgentStatus::Pending;
            }
        }
        let agent = self.save_agent(agent).await?;
        let rules = self
            .store
            .list_rules(&agent.id)
            .await
            .map_err(store_failure)?;
        Ok(Connection {
            first_connection,
            rules: rules.iter().map(RuleView::from).collect(),
            agent,
        })
    }

    /// The acting agent as it sees itself (soul, stores), for `GET /api/v1/agent/soul|stores`.
    pub async fn own_agent(&self, principal: &Principal) -> Result<Agent, DomainError> {
        self.acting_agent(principal)
            .await?
            .ok_or_else(|| principal.refuse("Only an agent key has an agent."))
    }

    /// `POST /api/v1/agents/{id}/reactivate`: the only way out of the kill switch.
    pub async fn reactivate(&self, principal: &Principal, id: &str) -> Result<Agent, DomainError> {
        let mut agent = self.owned_agent(principal, id).await?;
        let was_suspended = agent.status == AgentStatus::Suspended;
        agent.status = AgentStatus::Active;
        let agent = self
            .save_agent_with_event(agent, was_suspended.then_some(EventType::AgentReactivated))
            .await?;
        if was_suspended {
            let started = self.release_agent_machines(&agent.id).await?;
            if started > 0 {
                tracing::info!(agent_id = %agent.id, started, "machines stopped by the kill switch start again");
            }
        }
        self.audit(
            &agent.account_id,
            Some(&agent.id),
            "reactivate",
            Some("active"),
            None,
            serde_json::json!({}),
        )
        .await?;
        Ok(agent)
    }

    /// `403 kill_switch_active` when the agent is suspended.
    pub(crate) async fn refuse_if_suspended(&self, agent_id: &AgentId) -> Result<(), DomainError> {
        match self
            .store
            .get_agent(agent_id)
            .await
            .map_err(store_failure)?
        {
            Some(agent) if agent.status == AgentStatus::Suspended => {
                Err(kill_switch_active(&agent))
            }
            _ => Ok(()),
        }
    }

    /// The agent an agent key acts for, refusing a suspended one.
    async fn acting_agent(&self, principal: &Principal) -> Result<Option<Agent>, DomainError> {
        let Some(agent_id) = principal.agent_id() else {
            return Ok(None);
        };
        let agent = self
            .store
            .get_agent(agent_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        acting(agent).map(Some)
    }

    /// The agent an agent key acts for (refusing a suspended one) with what a decision about it
    /// reads: its rules and, when they need it, its spending — in one read.
    async fn acting_agent_for_decision(
        &self,
        principal: &Principal,
    ) -> Result<Option<Decidable>, DomainError> {
        let Some(agent_id) = principal.agent_id() else {
            return Ok(None);
        };
        let read = self
            .store
            .get_agent_for_decision(agent_id, spending_window_start(self.clock.now()))
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        Ok(Some(Decidable {
            agent: acting(read.agent)?,
            rules: read.rules.into_iter().map(|r| r.rule).collect(),
            spending: read.spending,
        }))
    }

    /// Evaluates the agent's rules for a transaction; also the budget limits to re-check
    /// atomically when the transaction is a storefront order.
    pub(crate) async fn decide(
        &self,
        agent: &Agent,
        tx: &Transaction,
    ) -> Result<(Decision, BudgetLimits), DomainError> {
        let read = self
            .store
            .get_agent_for_decision(&agent.id, spending_window_start(self.clock.now()))
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        let rules: Vec<Rule> = read.rules.into_iter().map(|r| r.rule).collect();
        Ok(self.decide_by(agent, &rules, &read.spending, tx))
    }

    /// [`Self::decide`] with the agent's rules and spending already read.
    fn decide_by(
        &self,
        agent: &Agent,
        rules: &[Rule],
        spending: &[(storefront_domain::timestamp::Timestamp, i64)],
        tx: &Transaction,
    ) -> (Decision, BudgetLimits) {
        let now = self.clock.now();
        let sum_since = |start| spent_since(spending, start);
        // The longest rate window any rule can ask about is 31 days; older orders never count.
        let recent = spending.iter().map(|(at, _)| *at).collect();
        let context = Context {
            now,
            spent_day_minor: sum_since(Period::Day.start(now)),
            spent_week_minor: sum_since(Period::Week.start(now)),
            spent_month_minor: sum_since(Period::Month.start(now)),
            recent_transactions: recent,
            trusted_stores: agent.trusted_stores.clone(),
            blocked_stores: agent.blocked_stores.clone(),
        };
        let limits = rules
            .iter()
            .filter(|r| r.enabled && r.action == RuleAction::Deny)
            .filter_map(|r| match r.kind {
                RuleKind::Budget { period, max_minor } => Some((period.start(now), max_minor)),
                _ => None,
            })
            .collect();
        (evaluate(rules, tx, &context), limits)
    }

    /// `POST /api/v1/agent/check`: what the rules say about a purchase the agent is about to make.
    pub async fn check(
        &self,
        principal: &Principal,
        tx: Transaction,
    ) -> Result<CheckResult, DomainError> {
        let Decidable {
            agent,
            rules,
            spending,
        } = self
            .acting_agent_for_decision(principal)
            .await?
            .ok_or_else(|| {
                principal.refuse("Only an agent key (POST /api/v1/agents/{id}/keys) can check.")
            })?;
        if !(1..=MAX_AMOUNT_MINOR).contains(&tx.amount_minor) {
            return Err(DomainError::validation(
                "transaction.amount_minor",
                "The amount must be positive and at most 1,000,000,000.00.",
                "Send amount_minor as a whole number of minor units, like 1999.",
            ));
        }
        let (decision, _) = self.decide_by(&agent, &rules, &spending, &tx);
        self.audit_decision(
            &agent.account_id,
            &agent.id,
            "check",
            &decision,
            serde_json::json!({"amount_minor": tx.amount_minor, "currency": tx.currency, "merchant_domain": tx.merchant_domain, "category": tx.category}),
        )
        .await?;
        Ok(check_result(&decision, self.clock.now()))
    }

    /// `GET /api/v1/agent/rules`: the agent's own rules (also while suspended).
    pub async fn own_rules(&self, principal: &Principal) -> Result<Vec<RuleView>, DomainError> {
        let agent_id = principal
            .agent_id()
            .ok_or_else(|| principal.refuse("Only an agent key has rules of its own."))?;
        let rules = self
            .store
            .list_rules(agent_id)
            .await
            .map_err(store_failure)?;
        Ok(rules.iter().map(RuleView::from).collect())
    }

    /// The gate of a storefront order placed with an agent key: a refusal, an escalation to the
    /// owner, or go — each with the budgets to re-check in the order's transaction.
    pub(crate) async fn govern_order(
        &self,
        principal: &Principal,
        product: &Product,
        order: &storefront_domain::order::Order,
    ) -> Result<Gate, DomainError> {
        let (amount_minor, currency) = (order.total_minor, order.currency.as_str());
        let Some(Decidable {
            agent,
            rules,
            spending,
        }) = self.acting_agent_for_decision(principal).await?
        else {
            return Ok(Gate::Proceed(None));
        };
        let host = self
            .settings
            .base_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or_default()
            .to_owned();
        let tx = Transaction {
            amount_minor,
            currency: currency.to_owned(),
            merchant_name: Some("storefront".into()),
            merchant_domain: Some(host),
            category: Some(product.category.clone()),
            product_id: Some(product.id.clone()),
        };
        let (decision, limits) = self.decide_by(&agent, &rules, &spending, &tx);
        self.audit_decision(
            &agent.account_id,
            &agent.id,
            "order_decision",
            &decision,
            serde_json::json!({"amount_minor": amount_minor, "product_id": product.id}),
        )
        .await?;
        let guard = (!limits.is_empty()).then(|| BudgetGuard {
            agent_id: agent.id.clone(),
            amount_minor,
            limits,
        });
        match decision.result {
            Verdict::Deny => Err(decision.denial().unwrap_or_else(DomainError::internal)),
            Verdict::Escalate => {
                let (tier, timeout_seconds) = decision
                    .approval
                    .unwrap_or((storefront_domain::governance::DEFAULT_TIER, 3600));
                Ok(Gate::Escalate(Escalation {
                    guard,
                    agent_id: agent.id.clone(),
                    tier,
                    timeout_seconds,
                    rule_code: decision
                        .rule
                        .as_ref()
                        .map(|r| r.code.clone())
                        .unwrap_or_default(),
                    reason: decision.reason.clone(),
                }))
            }
            Verdict::Allow => Ok(Gate::Proceed(guard)),
        }
    }
}

/// What the rules say about a storefront order of an agent key.
pub(crate) enum Gate {
    /// Go on (re-checking these budgets in the order's transaction).
    Proceed(Option<BudgetGuard>),
    /// Wait for the owner.
    Escalate(Escalation),
}

pub(crate) struct Escalation {
    pub guard: Option<BudgetGuard>,
    pub agent_id: AgentId,
    pub tier: u8,
    pub timeout_seconds: u32,
    pub rule_code: String,
    pub reason: String,
}

/// An acting agent with what its governance decision reads.
struct Decidable {
    agent: Agent,
    rules: Vec<Rule>,
    spending: Vec<(storefront_domain::timestamp::Timestamp, i64)>,
}

/// The start of the longest window a rule sums spending over (the day, week or month, whichever
/// began first): older orders never count.
fn spending_window_start(
    now: storefront_domain::timestamp::Timestamp,
) -> storefront_domain::timestamp::Timestamp {
    Period::Day
        .start(now)
        .min(Period::Week.start(now))
        .min(Period::Month.start(now))
}

/// Budgets to re-check in an order's transaction: each limit's start and its maximum.
type BudgetLimits = Vec<(storefront_domain::timestamp::Timestamp, i64)>;

/// An agent that may act: not suspended (kill switch), not waiting for its owner's confirmation.
fn acting(agent: Agent) -> Result<Agent, DomainError> {
    match agent.status {
        AgentStatus::Suspended => Err(kill_switch_active(&agent)),
        AgentStatus::Pending => Err(DomainError::forbidden(format!(
            "Agent {} waits for the owner's confirmation.",
            agent.id
        ))),
        AgentStatus::Active => Ok(agent),
    }
}

fn kill_switch_active(agent: &Agent) -> DomainError {
    DomainError::new(
        ErrorCode::KillSwitchActive,
        format!("Agent {} is suspended (kill switch).", agent.id),
        "Only the account owner can reactivate it.",
    )
}

fn parse_action(raw: Option<&str>, kind: &RuleKind) -> Result<RuleAction, DomainError> {
    let action = match raw {
        None => match kind {
            RuleKind::EscalateAbove { .. } => RuleAction::Escalate,
            _ => RuleAction::Deny,
        },
        Some(raw) => RuleAction::parse(raw).ok_or_else(|| {
            DomainError::validation(
                "action",
                format!("'{raw}' is not a rule action."),
                "Use \"deny\" or \"escalate\".",
            )
        })?,
    };
    if matches!(kind, RuleKind::EscalateAbove { .. }) && action != RuleAction::Escalate {
        return Err(DomainError::validation(
            "action",
            "An escalate_above rule escalates; it cannot deny.",
            "Use action \"escalate\", or a per_transaction_cap rule to deny.",
        ));
    }
    Ok(action)
}

fn check_result(d: &Decision, now: storefront_domain::timestamp::Timestamp) -> CheckResult {
    CheckResult {
        result: match d.result {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Escalate => "escalate",
        }
        .to_owned(),
        rule_id: d.rule.as_ref().map(|r| r.code.clone()),
        rule_name: d.rule.as_ref().map(|r| r.name.clone()),
        reason: d.reason.clone(),
        approval_required: d
            .approval
            .as_ref()
            .map(|(tier, timeout)| ApprovalRequirement {
                tier: *tier,
                method: storefront_domain::agent::APPROVAL_METHOD.into(),
                timeout: *timeout,
            }),
        evaluated_rules: d.evaluated_rules,
        timestamp: format(&now),
    }
}

/// What an agent spent since `start`, from its spending rows (`Store::agent_spending`).
pub(crate) fn spent_since(
    spending: &[(storefront_domain::timestamp::Timestamp, i64)],
    start: storefront_domain::timestamp::Timestamp,
) -> i64 {
    spending
        .iter()
        .filter(|(at, _)| *at >= start)
        .map(|(_, amount)| *amount)
        .sum()
}
