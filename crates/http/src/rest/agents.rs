//! Agents and their rules (owner keys), and the agent's own endpoints (`check`, `rules`) of the
//! governance API we follow (docs/api.md, "Governance").

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{ApiJson, ApiQuery, Caller, CallerEvenIfSuspended, OptionalJson};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storefront_app::accounts::CreatedKey;
use storefront_app::agents::{
    AgentInput, CheckResult, ConnectInput, Connection, RuleInput, RuleView,
};
use storefront_app::App;
use storefront_domain::agent::{Agent, Approval, ApprovalStatus, AuditEvent};
use storefront_domain::governance::Transaction;
use storefront_domain::DomainError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(create_key))
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(update_rule, delete_rule))
        .routes(routes!(set_soul))
        .routes(routes!(set_stores))
        .routes(routes!(check))
        .routes(routes!(own_rules))
        .routes(routes!(connect))
        .routes(routes!(own_soul))
        .routes(routes!(own_stores))
        .routes(routes!(own_approval))
        .routes(routes!(kill_switch))
        .routes(routes!(owner_kill_switch))
        .routes(routes!(reactivate))
        .routes(routes!(audit))
        .routes(routes!(list_approvals))
        .routes(routes!(approve))
        .routes(routes!(deny))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    events: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only this agent's records.
    agent_id: Option<String>,
    /// `next_cursor` of the previous page (records after it, oldest first).
    after: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// The governance audit: checks, decisions, approvals, kill switches, oldest first.
#[utoipa::path(operation_id = "list_audit", get, path = "/audit", tag = "governance", params(AuditQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of audit records", body = Envelope<AuditPage>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys read the audit", body = ErrorEnvelope),
    ))]
async fn audit(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Success, ApiError> {
    let limit = crate::extract::int_param("limit", q.limit.as_deref())?;
    let page = app
        .list_audit(&principal, q.agent_id.as_deref(), q.after, limit)
        .await?;
    Ok(ok(AuditPage {
        events: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApprovalData {
    approval: Approval,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApprovalList {
    approvals: Vec<Approval>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApprovalQuery {
    /// Only approvals in this status.
    #[param(value_type = Option<ApprovalStatus>)]
    status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KillSwitchBody {
    /// Must be `true`: the switch suspends the agent at once.
    confirm: bool,
    reason: Option<String>,
    /// Whether the agent's running machines are stopped until it is reactivated (default
    /// `true`); `false` keeps them running. Their resource tokens stop working either way.
    #[serde(default)]
    stop_machines: Option<bool>,
}

fn confirmed(body: &KillSwitchBody) -> Result<(), DomainError> {
    if body.confirm {
        Ok(())
    } else {
        Err(DomainError::validation(
            "confirm",
            "The kill switch needs confirm: true.",
            "Send {\"confirm\": true, \"reason\": \"...\"}.",
        ))
    }
}

/// The kill switch, pulled by the agent itself: suspended at once, waiting orders
/// canceled, every later call `403 kill_switch_active`.
#[utoipa::path(operation_id = "agent_kill_switch", post, path = "/agent/kill-switch", tag = "governance", request_body = KillSwitchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Suspended: the agent, and how many waiting orders were canceled", body = Envelope<KillSwitchResult>),
        (status = 400, description = "confirm is not true", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key, or already suspended", body = ErrorEnvelope),
    ))]
async fn kill_switch(
    State(app): State<App>,
    Caller(principal): Caller,
    body: Result<ApiJson<KillSwitchBody>, ApiError>,
) -> Result<Success, ApiError> {
    // Who asks comes before what they sent: without a key, 401 whatever the body.
    principal.require_account()?;
    let body = body?;
    confirmed(&body.body)?;
    let stop_machines = body.body.stop_machines.unwrap_or(true);
    let (agent, canceled, machines) = app
        .kill_switch(&principal, None, body.body.reason, stop_machines)
        .await?;
    Ok(ok(KillSwitchResult {
        success: true,
        agent_status: agent.status,
        active_checkouts_canceled: canceled,
        machines_stopped: machines.stopped,
        timestamp: storefront_domain::timestamp::format(&app.clock().now()),
    }))
}

/// The kill switch's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct KillSwitchResult {
    success: bool,
    agent_status: storefront_domain::agent::AgentStatus,
    active_checkouts_canceled: usize,
    /// Running machines stopped (files kept) until the agent is reactivated.
    machines_stopped: usize,
    timestamp: String,
}

/// The kill switch pulled by the owner.
#[utoipa::path(operation_id = "owner_kill_switch", post, path = "/agents/{agent_id}/kill-switch", tag = "governance", request_body = KillSwitchBody,
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The suspended agent", body = Envelope<AgentData>),
        (status = 400, description = "confirm is not true", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn owner_kill_switch(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<KillSwitchBody>, ApiError>,
) -> Result<Success, ApiError> {
    principal.require_account()?;
    let body = body?;
    confirmed(&body.body)?;
    let stop_machines = body.body.stop_machines.unwrap_or(true);
    let (agent, _, _) = app
        .kill_switch(&principal, Some(&id), body.body.reason, stop_machines)
        .await?;
    Ok(ok(AgentData { agent }))
}

/// Lift the kill switch (owner only).
#[utoipa::path(operation_id = "reactivate_agent", post, path = "/agents/{agent_id}/reactivate", tag = "governance",
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The active agent", body = Envelope<AgentData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn reactivate(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let agent = app.reactivate(&principal, &id).await?;
    Ok(ok(AgentData { agent }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyBody {
    /// Why, for the agent (up to 1000 characters).
    reason: Option<String>,
}

/// The account's approvals, newest first.
#[utoipa::path(operation_id = "list_approvals", get, path = "/approvals", tag = "governance", params(ApprovalQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The approvals", body = Envelope<ApprovalList>),
        (status = 400, description = "A bad status", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys decide approvals", body = ErrorEnvelope),
    ))]
async fn list_approvals(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<ApprovalQuery>,
) -> Result<Success, ApiError> {
    let approvals = app.list_approvals(&principal, q.status.as_deref()).await?;
    Ok(ok(ApprovalList { approvals }))
}

/// Approve: the waiting order is charged and proceeds.
#[utoipa::path(operation_id = "approve", post, path = "/approvals/{approval_id}/approve", tag = "governance",
    params(("approval_id" = String, Path, description = "An approval id (apr_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Approved", body = Envelope<ApprovalData>),
        (status = 400, description = "Already decided", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 402, description = "The balance no longer covers the order", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys decide approvals", body = ErrorEnvelope),
        (status = 404, description = "No such approval in this account", body = ErrorEnvelope),
        (status = 410, description = "approval_expired: the order was canceled", body = ErrorEnvelope),
    ))]
async fn approve(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let approval = app.approve(&principal, &id).await?;
    Ok(ok(ApprovalData { approval }))
}

/// Deny: the waiting order is canceled; nothing was charged.
#[utoipa::path(operation_id = "deny", post, path = "/approvals/{approval_id}/deny", tag = "governance", request_body = DenyBody,
    params(("approval_id" = String, Path, description = "An approval id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Denied", body = Envelope<ApprovalData>),
        (status = 400, description = "Already decided, or a reason too long", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys decide approvals", body = ErrorEnvelope),
        (status = 404, description = "No such approval in this account", body = ErrorEnvelope),
        (status = 410, description = "approval_expired: the order was canceled", body = ErrorEnvelope),
    ))]
async fn deny(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<DenyBody>,
) -> Result<Success, ApiError> {
    let approval = app.deny(&principal, &id, body.reason).await?;
    Ok(ok(ApprovalData { approval }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentData {
    agent: Agent,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentList {
    agents: Vec<Agent>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RuleData {
    rule: RuleView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RuleList {
    rules: Vec<RuleView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Deleted {
    id: String,
    /// Always `true`.
    deleted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentBody {
    /// 1-200 characters.
    name: Option<String>,
    /// Up to 2000 characters.
    description: Option<String>,
    /// Whether the agent's first connection waits for the owner's confirmation.
    requires_confirmation: Option<bool>,
}

impl From<AgentBody> for AgentInput {
    fn from(b: AgentBody) -> Self {
        Self {
            name: b.name,
            description: b.description,
            requires_confirmation: b.requires_confirmation,
        }
    }
}

/// What an agent says of itself when it connects (camelCase spellings accepted).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectBody {
    #[serde(alias = "agentName")]
    agent_name: Option<String>,
    #[serde(alias = "agentType")]
    agent_type: Option<String>,
    platform: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SoulData {
    soul: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StoresData {
    trusted: Vec<String>,
    blocked: Vec<String>,
}

/// Connect: the agent introduces itself; `201` the first time (`pending` when the
/// owner must confirm it), `200` after.
#[utoipa::path(operation_id = "agent_connect", post, path = "/agent/connect", tag = "governance", request_body = ConnectBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Connected again", body = Envelope<Connection>),
        (status = 201, description = "First connection", body = Envelope<Connection>),
        (status = 400, description = "Invalid body", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; the agent is pending or suspended", body = ErrorEnvelope),
    ))]
async fn connect(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<ConnectBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let ConnectBody {
        agent_name,
        agent_type,
        platform,
        capabilities,
    } = body.body;
    let connection = app
        .connect(
            &principal,
            ConnectInput {
                agent_name,
                agent_type,
                platform,
                capabilities,
            },
        )
        .await?;
    let status = if connection.first_connection {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ok(connection)))
}

/// The owner's instructions to the agent (Markdown).
#[utoipa::path(operation_id = "agent_soul", get, path = "/agent/soul", tag = "governance",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The soul", body = Envelope<SoulData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or suspended", body = ErrorEnvelope),
    ))]
async fn own_soul(State(app): State<App>, Caller(principal): Caller) -> Result<Success, ApiError> {
    let agent = app.own_agent(&principal).await?;
    Ok(ok(SoulData { soul: agent.soul }))
}

/// The agent's trusted and blocked stores.
#[utoipa::path(operation_id = "agent_stores", get, path = "/agent/stores", tag = "governance",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The stores", body = Envelope<StoresData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or suspended", body = ErrorEnvelope),
    ))]
async fn own_stores(
    State(app): State<App>,
    Caller(principal): Caller,
) -> Result<Success, ApiError> {
    let agent = app.own_agent(&principal).await?;
    Ok(ok(StoresData {
        trusted: agent.trusted_stores,
        blocked: agent.blocked_stores,
    }))
}

/// Poll an approval of this agent until it is no longer pending.
#[utoipa::path(operation_id = "agent_approval", get, path = "/agent/approval/{approval_id}", tag = "governance",
    params(("approval_id" = String, Path, description = "An approval id (apr_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The approval, as a flat object", body = Envelope<storefront_app::approvals::AgentApprovalView>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or suspended", body = ErrorEnvelope),
        (status = 404, description = "No such approval of this agent", body = ErrorEnvelope),
    ))]
async fn own_approval(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    Ok(ok(app.agent_approval(&principal, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleBody {
    /// per_transaction_cap, budget, category, merchant, product, escalate_above or rate.
    kind: Option<String>,
    name: Option<String>,
    /// `deny` (default) or `escalate`.
    action: Option<String>,
    enabled: Option<bool>,
    /// The kind's parameters, like {"max_minor": 5000}.
    params: Option<Value>,
}

impl From<RuleBody> for RuleInput {
    fn from(b: RuleBody) -> Self {
        Self {
            kind: b.kind,
            name: b.name,
            action: b.action,
            enabled: b.enabled,
            params: b.params,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SoulBody {
    /// Markdown, up to 100 KB.
    soul: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoresBody {
    /// Domains the agent may buy from (with a merchant rule's trusted_only).
    #[serde(default)]
    trusted: Vec<String>,
    /// Domains the agent may never buy from (with a merchant rule).
    #[serde(default)]
    blocked: Vec<String>,
}

/// The transaction to check; `amount` is in major units, a number.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckTransaction {
    amount_minor: Option<i64>,
    /// Major units, like 19.99; at most two decimals.
    amount: Option<f64>,
    currency: Option<String>,
    #[serde(alias = "merchantName")]
    merchant_name: Option<String>,
    #[serde(alias = "merchantDomain")]
    merchant_domain: Option<String>,
    category: Option<String>,
    #[serde(alias = "productId")]
    product_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckBody {
    /// What the agent is about to do, like `purchase`.
    action: Option<String>,
    transaction: CheckTransaction,
}

fn amount_minor(t: &CheckTransaction) -> Result<i64, DomainError> {
    match (t.amount_minor, t.amount) {
        (Some(minor), _) => Ok(minor),
        (None, Some(major)) => {
            storefront_domain::money::Money::minor_from_major(major).ok_or_else(|| {
                DomainError::validation(
                    "transaction.amount",
                    "amount has more than two decimals, is not a finite number, or is too large.",
                    "Send amount_minor as an integer (1999 for 19.99).",
                )
            })
        }
        (None, None) => Err(DomainError::validation(
            "transaction.amount_minor",
            "The transaction needs an amount.",
            "Send amount_minor (an integer of minor units) or amount (major units).",
        )),
    }
}

/// Create an agent.
#[utoipa::path(operation_id = "create_agent", post, path = "/agents", tag = "governance", request_body = AgentBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The agent", body = Envelope<AgentData>),
        (status = 400, description = "Invalid body", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
    ))]
async fn create_agent(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<AgentBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let agent = app.create_agent(&principal, body.body.into()).await?;
    Ok((StatusCode::CREATED, ok(AgentData { agent })))
}

/// The account's agents.
#[utoipa::path(operation_id = "list_agents", get, path = "/agents", tag = "governance",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The agents", body = Envelope<AgentList>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
    ))]
async fn list_agents(
    State(app): State<App>,
    Caller(principal): Caller,
) -> Result<Success, ApiError> {
    let agents = app.list_agents(&principal).await?;
    Ok(ok(AgentList { agents }))
}

/// One agent.
#[utoipa::path(operation_id = "get_agent", get, path = "/agents/{agent_id}", tag = "governance",
    params(("agent_id" = String, Path, description = "An agent id (agt_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The agent", body = Envelope<AgentData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn get_agent(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let agent = app.get_agent(&principal, &id).await?;
    Ok(ok(AgentData { agent }))
}

/// Rename or describe an agent.
#[utoipa::path(operation_id = "update_agent", patch, path = "/agents/{agent_id}", tag = "governance", request_body = AgentBody,
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The agent", body = Envelope<AgentData>),
        (status = 400, description = "Invalid body", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn update_agent(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: ApiJson<AgentBody>,
) -> Result<Success, ApiError> {
    let agent = app.update_agent(&principal, &id, body.body.into()).await?;
    Ok(ok(AgentData { agent }))
}

/// Delete an agent; its keys stop working at once.
#[utoipa::path(operation_id = "delete_agent", delete, path = "/agents/{agent_id}", tag = "governance",
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = Envelope<Deleted>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn delete_agent(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    app.delete_agent(&principal, &id).await?;
    Ok(ok(Deleted { id, deleted: true }))
}

/// A key for the agent: it buys and manages within the agent's rules, never manages keys,
/// rules or approvals. The secret is in this answer only.
#[utoipa::path(operation_id = "create_agent_key", post, path = "/agents/{agent_id}/keys", tag = "governance",
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The key with its secret (shown once)", body = Envelope<CreatedKey>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn create_key(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Success), ApiError> {
    let key = app.create_agent_key(&principal, &id).await?;
    Ok((StatusCode::CREATED, ok(key)))
}

/// Add a rule.
#[utoipa::path(operation_id = "create_rule", post, path = "/agents/{agent_id}/rules", tag = "governance", request_body = RuleBody,
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The rule", body = Envelope<RuleData>),
        (status = 400, description = "Unknown kind or invalid params (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage rules", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
        (status = 409, description = "Concurrent rule creation; retry", body = ErrorEnvelope),
    ))]
async fn create_rule(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: ApiJson<RuleBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let rule = app.create_rule(&principal, &id, body.body.into()).await?;
    Ok((StatusCode::CREATED, ok(RuleData { rule })))
}

/// The agent's rules.
#[utoipa::path(operation_id = "list_rules", get, path = "/agents/{agent_id}/rules", tag = "governance",
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The rules", body = Envelope<RuleList>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage rules", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn list_rules(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let rules = app.list_rules(&principal, &id).await?;
    Ok(ok(RuleList { rules }))
}

/// Change a rule (its kind stays).
#[utoipa::path(operation_id = "update_rule", patch, path = "/agents/{agent_id}/rules/{rule_id}", tag = "governance", request_body = RuleBody,
    params(("agent_id" = String, Path, description = "An agent id"), ("rule_id" = String, Path, description = "A rule id (rul_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The rule", body = Envelope<RuleData>),
        (status = 400, description = "Invalid params (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage rules", body = ErrorEnvelope),
        (status = 404, description = "No such agent or rule", body = ErrorEnvelope),
    ))]
async fn update_rule(
    State(app): State<App>,
    Caller(principal): Caller,
    Path((id, rule_id)): Path<(String, String)>,
    body: ApiJson<RuleBody>,
) -> Result<Success, ApiError> {
    let rule = app
        .update_rule(&principal, &id, &rule_id, body.body.into())
        .await?;
    Ok(ok(RuleData { rule }))
}

/// Delete a rule.
#[utoipa::path(operation_id = "delete_rule", delete, path = "/agents/{agent_id}/rules/{rule_id}", tag = "governance",
    params(("agent_id" = String, Path, description = "An agent id"), ("rule_id" = String, Path, description = "A rule id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = Envelope<Deleted>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage rules", body = ErrorEnvelope),
        (status = 404, description = "No such agent or rule", body = ErrorEnvelope),
    ))]
async fn delete_rule(
    State(app): State<App>,
    Caller(principal): Caller,
    Path((id, rule_id)): Path<(String, String)>,
) -> Result<Success, ApiError> {
    app.delete_rule(&principal, &id, &rule_id).await?;
    Ok(ok(Deleted {
        id: rule_id,
        deleted: true,
    }))
}

/// The owner's Markdown instructions to the agent (its "soul").
#[utoipa::path(operation_id = "set_soul", put, path = "/agents/{agent_id}/soul", tag = "governance", request_body = SoulBody,
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The agent", body = Envelope<AgentData>),
        (status = 400, description = "Too long", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn set_soul(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: ApiJson<SoulBody>,
) -> Result<Success, ApiError> {
    let agent = app.set_soul(&principal, &id, body.body.soul).await?;
    Ok(ok(AgentData { agent }))
}

/// The agent's trusted and blocked stores (domains).
#[utoipa::path(operation_id = "set_stores", put, path = "/agents/{agent_id}/stores", tag = "governance", request_body = StoresBody,
    params(("agent_id" = String, Path, description = "An agent id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The agent", body = Envelope<AgentData>),
        (status = 400, description = "Not domains, or a domain in both lists", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage agents", body = ErrorEnvelope),
        (status = 404, description = "No such agent in this account", body = ErrorEnvelope),
    ))]
async fn set_stores(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: ApiJson<StoresBody>,
) -> Result<Success, ApiError> {
    let StoresBody { trusted, blocked } = body.body;
    let agent = app.set_stores(&principal, &id, trusted, blocked).await?;
    Ok(ok(AgentData { agent }))
}

/// The pre-action check: may the agent make this purchase?
#[utoipa::path(operation_id = "agent_check", post, path = "/agent/check", tag = "governance", request_body = CheckBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "allow, deny or escalate, with the deciding rule", body = Envelope<CheckResult>),
        (status = 400, description = "Invalid transaction (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key, or kill_switch_active", body = ErrorEnvelope),
    ))]
async fn check(
    State(app): State<App>,
    // The check reads the agent anyway and refuses a suspended one itself (`kill_switch_active`),
    // so the extractor does not read it a second time.
    CallerEvenIfSuspended(principal): CallerEvenIfSuspended,
    body: ApiJson<CheckBody>,
) -> Result<Success, ApiError> {
    let CheckBody {
        action: _action,
        transaction: t,
    } = body.body;
    let currency = match t.currency.as_deref() {
        None => "usd".to_owned(),
        Some(raw) => storefront_domain::money::Currency::parse_iso(raw)
            .ok_or_else(|| {
                DomainError::validation(
                    "transaction.currency",
                    format!("'{raw}' is not an ISO 4217 currency code."),
                    "Use three letters, like USD.",
                )
            })?
            .to_string(),
    };
    let tx = Transaction {
        amount_minor: amount_minor(&t)?,
        currency,
        merchant_name: t.merchant_name.clone(),
        merchant_domain: t.merchant_domain.map(|d| d.to_ascii_lowercase()),
        category: t.category.clone(),
        product_id: t.product_id.clone(),
    };
    Ok(ok(app.check(&principal, tx).await?))
}

/// The agent's own rules (readable also while suspended).
#[utoipa::path(operation_id = "agent_rules", get, path = "/agent/rules", tag = "governance",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The rules", body = Envelope<RuleList>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key", body = ErrorEnvelope),
    ))]
async fn own_rules(
    State(app): State<App>,
    CallerEvenIfSuspended(principal): CallerEvenIfSuspended,
) -> Result<Success, ApiError> {
    let rules = app.own_rules(&principal).await?;
    Ok(ok(RuleList { rules }))
}
