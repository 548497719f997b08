//! Agents (keys, rules, soul, stores, kill switch) and approvals.

use super::account::Empty;
use super::render::{html, html_with_status, money, when, Chrome, Notice};
use super::{fixable, see_other, Form, PageError, PageResult, Session};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use storefront_app::agents::{AgentInput, RuleInput};
use storefront_app::App;
use storefront_domain::agent::{AgentStatus, ApprovalStatus};
use storefront_domain::governance::RuleKind;
use storefront_domain::DomainError;

/// Re-renders a page with the error when the owner can fix it there; anything else is an error
/// page of its own.
fn on_error(e: DomainError) -> Result<Notice, PageError> {
    if fixable(&e) {
        Ok(Notice::error(&e))
    } else {
        Err(e.into())
    }
}

// ----- the agents list -----

pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub connected: String,
}

#[derive(Template)]
#[template(path = "dashboard/agents.html")]
pub struct AgentsPage {
    pub chrome: Chrome,
    pub agents: Vec<AgentRow>,
}

async fn agents_page(
    app: &App,
    session: &Session,
    notice: Option<Notice>,
) -> Result<AgentsPage, PageError> {
    let agents = app
        .list_agents(session.principal())
        .await?
        .into_iter()
        .map(|a| AgentRow {
            id: a.id.to_string(),
            name: a.name,
            description: a.description,
            status: a.status.as_str().to_owned(),
            connected: a
                .connected_at
                .map(|t| when(&storefront_domain::timestamp::format(&t)))
                .unwrap_or_else(|| "never".into()),
        })
        .collect();
    Ok(AgentsPage {
        chrome: Chrome::new("Agents", "agents", session.csrf()).with_notice(notice),
        agents,
    })
}

pub async fn list(State(app): State<App>, session: Session) -> PageResult {
    Ok(html(&agents_page(&app, &session, None).await?))
}

#[derive(Deserialize)]
pub struct AgentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    requires_confirmation: Option<String>,
}

impl AgentForm {
    fn input(self) -> AgentInput {
        AgentInput {
            name: Some(self.name),
            // An empty box means "no description", which the use-case expresses as none.
            description: Some(self.description).filter(|d| !d.trim().is_empty()),
            requires_confirmation: Some(self.requires_confirmation.is_some()),
        }
    }
}

pub async fn create(State(app): State<App>, form: Form<AgentForm>) -> PageResult {
    let session = form.session;
    match app
        .create_agent(session.principal(), form.data.input())
        .await
    {
        Ok(agent) => see_other(&format!("/dashboard/agents/{}", agent.id)),
        Err(e) => {
            let notice = on_error(e)?;
            let page = agents_page(&app, &session, Some(notice)).await?;
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
    }
}

// ----- one agent -----

pub struct RuleRow {
    pub id: String,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub action: String,
    pub enabled: bool,
    pub params: String,
}

pub struct AgentKeyRow {
    pub id: String,
    pub prefix: String,
    pub created: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "dashboard/agent.html")]
pub struct AgentPage {
    pub chrome: Chrome,
    pub id: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub suspended: bool,
    pub requires_confirmation: bool,
    pub soul: String,
    pub trusted: String,
    pub blocked: String,
    pub platform: String,
    pub spend_today: String,
    pub spend_month: String,
    pub rules: Vec<RuleRow>,
    pub keys: Vec<AgentKeyRow>,
    pub rule_kinds: Vec<&'static str>,
    /// An agent key just created: its secret, shown this once.
    pub new_secret: Option<String>,
}

async fn agent_page(
    app: &App,
    session: &Session,
    id: &str,
    notice: Option<Notice>,
    new_secret: Option<String>,
) -> Result<AgentPage, PageError> {
    let principal = session.principal();
    let agent = app.get_agent(principal, id).await?;
    let rules = app.list_rules(principal, id).await?;
    let spending = app.spending_of(&agent).await?;
    let currency = app.account(principal).await?.currency.to_string();
    let keys = app
        .list_api_keys(principal)
        .await?
        .into_iter()
        .filter(|k| k.agent_id.as_ref() == Some(&agent.id))
        .map(|k| AgentKeyRow {
            id: k.id.to_string(),
            prefix: k.prefix,
            created: when(&storefront_domain::timestamp::format(&k.created_at)),
            revoked: k.revoked_at.is_some(),
        })
        .collect();
    Ok(AgentPage {
        chrome: Chrome::new(format!("Agent {}", agent.name), "agents", session.csrf())
            .with_notice(notice),
        id: agent.id.to_string(),
        name: agent.name.clone(),
        description: agent.description.clone(),
        status: agent.status.as_str().to_owned(),
        suspended: agent.status == AgentStatus::Suspended,
        requires_confirmation: agent.requires_confirmation,
        soul: agent.soul.clone(),
        trusted: agent.trusted_stores.join(", "),
        blocked: agent.blocked_stores.join(", "),
        platform: [agent.agent_type.clone(), agent.platform.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" on "),
        spend_today: money(spending.today_minor, &currency),
        spend_month: money(spending.month_minor, &currency),
        rules: rules
            .into_iter()
            .map(|r| RuleRow {
                id: r.id,
                code: r.code,
                name: r.name,
                kind: r.kind,
                action: r.action.as_str().to_owned(),
                enabled: r.enabled,
                params: r.params.to_string(),
            })
            .collect(),
        keys,
        rule_kinds: RuleKind::NAMES.to_vec(),
        new_secret,
    })
}

pub async fn show(State(app): State<App>, session: Session, Path(id): Path<String>) -> PageResult {
    Ok(html(&agent_page(&app, &session, &id, None, None).await?))
}

/// Runs an action on an agent; on success back to the agent's page, on a fixable error the same
/// page with the message.
async fn act<T>(
    app: &App,
    session: &Session,
    id: &str,
    result: Result<T, DomainError>,
) -> PageResult {
    match result {
        Ok(_) => see_other(&format!("/dashboard/agents/{id}")),
        Err(e) => {
            let notice = on_error(e)?;
            let page = agent_page(app, session, id, Some(notice), None).await?;
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
    }
}

pub async fn edit(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<AgentForm>,
) -> PageResult {
    let result = app
        .update_agent(form.session.principal(), &id, form.data.input())
        .await;
    act(&app, &form.session, &id, result).await
}

pub async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    app.delete_agent(form.session.principal(), &id).await?;
    see_other("/dashboard/agents")
}

pub async fn create_key(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let session = form.session;
    match app.create_agent_key(session.principal(), &id).await {
        Ok(key) => {
            let notice = Notice::done(format!(
                "Agent key {} created. Copy the secret now: it is not shown again.",
                key.key_id
            ));
            let page = agent_page(&app, &session, &id, Some(notice), Some(key.api_key)).await?;
            Ok(html(&page))
        }
        Err(e) => act(&app, &session, &id, Err::<(), _>(e)).await,
    }
}

/// The rule form: the kind, name and action, and one input per parameter of any kind. Only the
/// filled-in parameters are sent, so the rules engine's own validation names what is wrong.
#[derive(Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    max_minor: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    allow: String,
    #[serde(default)]
    deny: String,
    #[serde(default)]
    trusted_only: Option<String>,
    #[serde(default)]
    amount_minor: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    timeout_seconds: String,
    #[serde(default)]
    max_transactions: String,
    #[serde(default)]
    per_seconds: String,
}

impl RuleForm {
    fn input(self) -> RuleInput {
        let mut params = Map::new();
        // Whole numbers go as numbers; anything else as typed, for the engine to name.
        let number = |raw: &str| match raw.trim().parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(raw.trim()),
        };
        let list = |raw: &str| {
            Value::from(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        };
        for (name, raw) in [
            ("max_minor", &self.max_minor),
            ("amount_minor", &self.amount_minor),
            ("timeout_seconds", &self.timeout_seconds),
            ("max_transactions", &self.max_transactions),
            ("per_seconds", &self.per_seconds),
            ("tier", &self.tier),
        ] {
            if !raw.trim().is_empty() {
                params.insert(name.into(), number(raw));
            }
        }
        if !self.period.trim().is_empty() {
            params.insert("period".into(), Value::from(self.period.trim()));
        }
        for (name, raw) in [("allow", &self.allow), ("deny", &self.deny)] {
            if !raw.trim().is_empty() {
                params.insert(name.into(), list(raw));
            }
        }
        if self.trusted_only.is_some() {
            params.insert("trusted_only".into(), Value::Bool(true));
        }
        RuleInput {
            kind: Some(self.kind),
            name: Some(self.name).filter(|n| !n.trim().is_empty()),
            action: Some(self.action).filter(|a| !a.is_empty()),
            enabled: Some(true),
            params: Some(Value::Object(params)),
        }
    }
}

pub async fn create_rule(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<RuleForm>,
) -> PageResult {
    let result = app
        .create_rule(form.session.principal(), &id, form.data.input())
        .await;
    act(&app, &form.session, &id, result).await
}

#[derive(Deserialize)]
pub struct ToggleForm {
    #[serde(default)]
    enabled: String,
}

pub async fn toggle_rule(
    State(app): State<App>,
    Path((id, rule_id)): Path<(String, String)>,
    form: Form<ToggleForm>,
) -> PageResult {
    let input = RuleInput {
        enabled: Some(form.data.enabled == "true"),
        ..RuleInput::default()
    };
    let result = app
        .update_rule(form.session.principal(), &id, &rule_id, input)
        .await;
    act(&app, &form.session, &id, result).await
}

pub async fn delete_rule(
    State(app): State<App>,
    Path((id, rule_id)): Path<(String, String)>,
    form: Form<Empty>,
) -> PageResult {
    let result = app
        .delete_rule(form.session.principal(), &id, &rule_id)
        .await;
    act(&app, &form.session, &id, result).await
}

#[derive(Deserialize)]
pub struct SoulForm {
    #[serde(default)]
    soul: String,
}

pub async fn soul(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<SoulForm>,
) -> PageResult {
    let result = app
        .set_soul(form.session.principal(), &id, form.data.soul)
        .await;
    act(&app, &form.session, &id, result).await
}

#[derive(Deserialize)]
pub struct StoresForm {
    #[serde(default)]
    trusted: String,
    #[serde(default)]
    blocked: String,
}

fn domains(raw: &str) -> Vec<String> {
    raw.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn stores(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<StoresForm>,
) -> PageResult {
    let result = app
        .set_stores(
            form.session.principal(),
            &id,
            domains(&form.data.trusted),
            domains(&form.data.blocked),
        )
        .await;
    act(&app, &form.session, &id, result).await
}

#[derive(Deserialize)]
pub struct KillForm {
    #[serde(default)]
    reason: String,
    /// The checkbox "Also stop its running machines": present (checked) or absent.
    #[serde(default)]
    stop_machines: Option<String>,
}

pub async fn kill(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<KillForm>,
) -> PageResult {
    let reason = Some(form.data.reason).filter(|r| !r.trim().is_empty());
    let stop_machines = form.data.stop_machines.is_some();
    let result = app
        .kill_switch(form.session.principal(), Some(&id), reason, stop_machines)
        .await
        .map(|(agent, _, _)| agent);
    act(&app, &form.session, &id, result).await
}

pub async fn reactivate(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let result = app.reactivate(form.session.principal(), &id).await;
    act(&app, &form.session, &id, result).await
}

// ----- approvals -----

pub struct ApprovalRow {
    pub id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub subject: String,
    pub subject_href: String,
    pub amount: String,
    pub rule: String,
    pub reason: String,
    pub tier: u8,
    pub status: String,
    pub pending: bool,
    pub created: String,
    pub expires: String,
    pub decision_reason: String,
}

#[derive(Template)]
#[template(path = "dashboard/approvals.html")]
pub struct ApprovalsPage {
    pub chrome: Chrome,
    pub pending: Vec<ApprovalRow>,
    pub decided: Vec<ApprovalRow>,
}

async fn approvals_page(
    app: &App,
    session: &Session,
    notice: Option<Notice>,
) -> Result<ApprovalsPage, PageError> {
    let principal = session.principal();
    let names: std::collections::HashMap<String, String> = app
        .list_agents(principal)
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a.name))
        .collect();
    let all = app.list_approvals(principal, None).await?;
    let rows: Vec<ApprovalRow> = all
        .into_iter()
        .map(|a| {
            let (subject, subject_href) = match (&a.order_id, &a.checkout_id) {
                (Some(order), _) => (
                    format!("order {order}"),
                    format!("/dashboard/orders/{order}"),
                ),
                (None, Some(checkout)) => (format!("checkout {checkout}"), String::new()),
                _ => (String::new(), String::new()),
            };
            ApprovalRow {
                id: a.id.to_string(),
                agent_id: a.agent_id.to_string(),
                agent_name: names
                    .get(a.agent_id.as_str())
                    .cloned()
                    .unwrap_or_else(|| a.agent_id.to_string()),
                subject,
                subject_href,
                amount: money(a.amount_minor, &a.currency),
                rule: a.rule_code.clone(),
                reason: a.reason.clone(),
                tier: a.tier,
                status: a.status.as_str().to_owned(),
                pending: a.status == ApprovalStatus::Pending,
                created: when(&storefront_domain::timestamp::format(&a.created_at)),
                expires: when(&storefront_domain::timestamp::format(&a.expires_at)),
                decision_reason: a.decision_reason.clone().unwrap_or_default(),
            }
        })
        .collect();
    let (pending, mut decided): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.pending);
    decided.truncate(50);
    Ok(ApprovalsPage {
        chrome: Chrome::new("Approvals", "approvals", session.csrf()).with_notice(notice),
        pending,
        decided,
    })
}

pub async fn approvals(State(app): State<App>, session: Session) -> PageResult {
    Ok(html(&approvals_page(&app, &session, None).await?))
}

async fn decided(app: &App, session: &Session, result: Result<(), DomainError>) -> PageResult {
    match result {
        Ok(()) => see_other("/dashboard/approvals"),
        Err(e) => {
            let notice = on_error(e)?;
            let page = approvals_page(app, session, Some(notice)).await?;
            Ok(html_with_status(StatusCode::CONFLICT, &page))
        }
    }
}

pub async fn approve(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let result = app.approve(form.session.principal(), &id).await.map(|_| ());
    decided(&app, &form.session, result).await
}

#[derive(Deserialize)]
pub struct DenyForm {
    #[serde(default)]
    reason: String,
}

pub async fn deny(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<DenyForm>,
) -> PageResult {
    let reason = Some(form.data.reason).filter(|r| !r.trim().is_empty());
    let result = app
        .deny(form.session.principal(), &id, reason)
        .await
        .map(|_| ());
    decided(&app, &form.session, result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str) -> RuleForm {
        RuleForm {
            kind: kind.into(),
            name: String::new(),
            action: "deny".into(),
            max_minor: String::new(),
            period: String::new(),
            allow: String::new(),
            deny: String::new(),
            trusted_only: None,
            amount_minor: String::new(),
            tier: String::new(),
            timeout_seconds: String::new(),
            max_transactions: String::new(),
            per_seconds: String::new(),
        }
    }

    #[test]
    fn only_filled_parameters_are_sent_with_their_types() {
        let mut cap = form("per_transaction_cap");
        cap.max_minor = " 5000 ".into();
        let input = cap.input();
        assert_eq!(input.params, Some(serde_json::json!({"max_minor": 5000})));
        assert_eq!(input.name, None);

        let mut category = form("category");
        category.deny = "gambling, , crypto".into();
        category.max_minor = "lots".into();
        assert_eq!(
            category.input().params,
            Some(serde_json::json!({"max_minor": "lots", "deny": ["gambling", "crypto"]}))
        );
    }
}
