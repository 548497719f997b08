//! The governance audit (docs/api.md, "Audit"): every check, decision, approval and kill switch is
//! an append-only record naming the rule that decided; owners read it with `GET
//! /api/v1/audit?agent_id=&after=`.

use crate::app::{store_failure, App};
use crate::page::{Page, PageRequest};
use crate::principal::Principal;
use serde_json::Value;
use storefront_domain::agent::AuditEvent;
use storefront_domain::governance::{Decision, Verdict};
use storefront_domain::ids::{AccountId, AgentId, AuditId};
use storefront_domain::DomainError;

impl App {
    /// Appends one audit record. A failure fails the operation it records: an unaudited
    /// governance decision is not taken.
    pub(crate) async fn audit(
        &self,
        account_id: &AccountId,
        agent_id: Option<&AgentId>,
        kind: &str,
        result: Option<&str>,
        rule_code: Option<&str>,
        detail: Value,
    ) -> Result<(), DomainError> {
        let event = AuditEvent {
            id: AuditId::generate(),
            account_id: account_id.clone(),
            agent_id: agent_id.cloned(),
            kind: kind.to_owned(),
            result: result.map(str::to_owned),
            rule_code: rule_code.map(str::to_owned),
            detail,
            created_at: self.clock.now(),
        };
        self.store.insert_audit(&event).await.map_err(store_failure)
    }

    /// Records a rules decision.
    pub(crate) async fn audit_decision(
        &self,
        account_id: &AccountId,
        agent_id: &AgentId,
        kind: &str,
        decision: &Decision,
        detail: Value,
    ) -> Result<(), DomainError> {
        let result = match decision.result {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Escalate => "escalate",
        };
        let mut detail = detail;
        if let Some(map) = detail.as_object_mut() {
            map.insert("reason".into(), Value::String(decision.reason.clone()));
            map.insert(
                "evaluated_rules".into(),
                Value::from(decision.evaluated_rules),
            );
        }
        self.audit(
            account_id,
            Some(agent_id),
            kind,
            Some(result),
            decision.rule.as_ref().map(|r| r.code.as_str()),
            detail,
        )
        .await
    }

    /// `GET /api/v1/audit?agent_id=&after=&limit=`: oldest first; `next_cursor` continues.
    pub async fn list_audit(
        &self,
        principal: &Principal,
        agent_id: Option<&str>,
        after: Option<String>,
        limit: Option<i64>,
    ) -> Result<Page<AuditEvent>, DomainError> {
        let account = principal.require_owner()?;
        let page = PageRequest::parse(limit, after)?;
        let agent = match agent_id.filter(|a| !a.is_empty()) {
            Some(raw) => Some(AgentId::parse(raw).ok_or_else(|| {
                DomainError::validation(
                    "agent_id",
                    format!("'{raw}' is not an agent id."),
                    "Use an id from GET /api/v1/agents.",
                )
            })?),
            None => None,
        };
        if let Some(c) = &page.cursor {
            if AuditId::parse(c).is_none() {
                return Err(PageRequest::invalid_cursor());
            }
        }
        let events = self
            .store
            .list_audit(account, agent.as_ref(), page.cursor.as_deref(), page.limit)
            .await
            .map_err(store_failure)?;
        Ok(Page::from_fetched(events, page.limit, |e: &AuditEvent| {
            e.id.to_string()
        }))
    }
}
