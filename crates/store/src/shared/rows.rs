//! Row mappers: a database row to its domain type. A value the domain does not know (a
//! status, a currency, malformed JSON) is reported as corrupt, never guessed.

use serde_json::Value;
use sqlx::Row as _;
use storefront_app::ports::{AgentRule, StoreResult};
use storefront_domain::account::{Account, ApiKey, DashboardSession, KeyRole, LoginCode};
use storefront_domain::agent::{Agent, AgentStatus, Approval, ApprovalStatus, DeviceGrant};
use storefront_domain::checkout::{Checkout, CheckoutStatus};
use storefront_domain::governance::{Rule, RuleAction, RuleKind};
use storefront_domain::ids::{
    AccountId, AgentId, ApprovalId, CheckoutId, JobId, KeyId, LedgerEntryId, OrderId, PaymentId,
    QuoteId, ServiceId,
};
use storefront_domain::job::{Job, JobStatus};
use storefront_domain::json::RawJson;
use storefront_domain::ledger::{LedgerEntry, LedgerKind};
use storefront_domain::money::Currency;
use storefront_domain::order::{Order, OrderStatus, PaymentMethod, PaymentStatus};
use storefront_domain::payment::{Payment, PaymentPurpose, PaymentState};
use storefront_domain::quote::Quote;
use storefront_domain::service::{Service, ServiceStatus};

use super::common::{corrupt, parse_json, parse_ts};
use super::db;

/// A row's columns by name, however it was read: through sqlx, or — SQLite's hottest point
/// reads — inline through rusqlite (see `db::read_inline`). The mappers of rows read both ways
/// take this, so each domain type still has one mapper. As with sqlx's `Row::get`, a column
/// missing or of another type than the schema gives is a bug and panics.
pub(crate) trait Columns {
    fn text_or_null(&self, name: &str) -> Option<&str>;
    fn int_or_null(&self, name: &str) -> Option<i64>;
    fn bool_or_null(&self, name: &str) -> Option<bool>;
}

impl Columns for db::Row {
    fn text_or_null(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
    fn int_or_null(&self, name: &str) -> Option<i64> {
        self.get(name)
    }
    fn bool_or_null(&self, name: &str) -> Option<bool> {
        self.get(name)
    }
}

/// Rows handed over one at a time, however they were read.
pub(crate) trait Rows {
    fn next_row(&mut self) -> StoreResult<Option<&dyn Columns>>;
}

/// Every remaining row, each mapped by `map`.
pub(crate) fn every_row<T>(
    rows: &mut dyn Rows,
    map: fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut all = Vec::new();
    while let Some(row) = rows.next_row()? {
        all.push(map(row)?);
    }
    Ok(all)
}

impl Rows for std::slice::Iter<'_, db::Row> {
    fn next_row(&mut self) -> StoreResult<Option<&dyn Columns>> {
        Ok(self.next().map(|row| row as &dyn Columns))
    }
}

/// A value [`ColumnsExt::column`] reads.
pub(crate) trait FromColumn<'r>: Sized {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self;
}

fn not_null<T>(value: Option<T>, name: &str) -> T {
    value.unwrap_or_else(|| panic!("column {name} is NULL against the schema"))
}

impl<'r> FromColumn<'r> for Option<&'r str> {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self {
        row.text_or_null(name)
    }
}
impl<'r> FromColumn<'r> for &'r str {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self {
        not_null(row.text_or_null(name), name)
    }
}
impl<'r> FromColumn<'r> for Option<String> {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self {
        row.text_or_null(name).map(str::to_owned)
    }
}
impl<'r> FromColumn<'r> for String {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self {
        not_null(row.text_or_null(name), name).to_owned()
    }
}
impl<'r> FromColumn<'r> for i64 {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self {
        not_null(row.int_or_null(name), name)
    }
}
impl<'r> FromColumn<'r> for bool {
    fn from_column(row: &'r (impl Columns + ?Sized), name: &str) -> Self {
        not_null(row.bool_or_null(name), name)
    }
}

/// `column::<T>(name)` on any [`Columns`].
pub(crate) trait ColumnsExt: Columns {
    fn column<'r, T: FromColumn<'r>>(&'r self, name: &str) -> T {
        T::from_column(self, name)
    }
}
impl<C: Columns + ?Sized> ColumnsExt for C {}

pub(super) fn account_from_row(r: &db::Row) -> StoreResult<Account> {
    Ok(Account {
        id: AccountId::from_trusted(r.get("id")),
        email: r.get("email"),
        name: r.get("name"),
        currency: Currency::parse(r.get::<&str, _>("currency"))
            .ok_or_else(|| corrupt("currency"))?,
        balance_minor: r.get("balance_minor"),
        balance_low_minor: r.get("balance_low_minor"),
        created_at: parse_ts(r.get("created_at"))?,
    })
}

pub(super) fn key_from_row(r: &db::Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: KeyId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        role: KeyRole::parse(r.get("role")).ok_or_else(|| corrupt("key role"))?,
        agent_id: r
            .get::<Option<String>, _>("agent_id")
            .map(AgentId::from_trusted),
        name: r.get("name"),
        prefix: r.get("prefix"),
        secret_hash: r.get("secret_hash"),
        created_at: parse_ts(r.get("created_at"))?,
        revoked_at: r
            .get::<Option<&str>, _>("revoked_at")
            .map(parse_ts)
            .transpose()?,
    })
}

pub(super) fn ledger_from_row(r: &dyn Columns) -> StoreResult<LedgerEntry> {
    Ok(LedgerEntry {
        id: LedgerEntryId::from_trusted(r.column("id")),
        account_id: AccountId::from_trusted(r.column("account_id")),
        kind: LedgerKind::parse(r.column("kind")).ok_or_else(|| corrupt("ledger kind"))?,
        amount_minor: r.column("amount_minor"),
        balance_after_minor: r.column("balance_after_minor"),
        order_id: r
            .column::<Option<String>>("order_id")
            .map(OrderId::from_trusted),
        description: r.column("description"),
        created_at: parse_ts(r.column("created_at"))?,
    })
}

pub(super) fn quote_from_row(r: &db::Row) -> StoreResult<Quote> {
    Ok(Quote {
        id: QuoteId::from_trusted(r.get("id")),
        account_id: r
            .get::<Option<String>, _>("account_id")
            .map(AccountId::from_trusted),
        product_id: r.get("product_id"),
        quantity: r.get("quantity"),
        configuration_normalized: parse_json(r.get("configuration"))?,
        configuration_warnings: parse_json(r.get("warnings"))?,
        line_items: parse_json(r.get("line_items"))?,
        total_minor: r.get("total_minor"),
        currency: Currency::parse(r.get::<&str, _>("currency"))
            .ok_or_else(|| corrupt("currency"))?,
        catalog_version: r.get("catalog_version"),
        management_capabilities: parse_json(r.get("management_capabilities"))?,
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
    })
}

pub(super) fn order_from_row(r: &dyn Columns) -> StoreResult<Order> {
    Ok(Order {
        id: OrderId::from_trusted(r.column("id")),
        account_id: r
            .column::<Option<String>>("account_id")
            .map(AccountId::from_trusted),
        agent_id: r
            .column::<Option<String>>("agent_id")
            .map(AgentId::from_trusted),
        status: OrderStatus::parse(r.column("status")).ok_or_else(|| corrupt("order status"))?,
        payment_status: PaymentStatus::parse(r.column("payment_status"))
            .ok_or_else(|| corrupt("payment status"))?,
        payment_method: PaymentMethod::parse(r.column("payment_method"))
            .ok_or_else(|| corrupt("payment method"))?,
        product_id: r.column("product_id"),
        quantity: r.column("quantity"),
        configuration: parse_json(r.column("configuration"))?,
        configuration_warnings: parse_json(r.column("configuration_warnings"))?,
        line_items: parse_json(r.column("line_items"))?,
        total_minor: r.column("total_minor"),
        currency: Currency::parse(r.column::<&str>("currency"))
            .ok_or_else(|| corrupt("currency"))?,
        quote_id: QuoteId::from_trusted(r.column("quote_id")),
        idempotency_key: r.column("idempotency_key"),
        created_at: parse_ts(r.column("created_at"))?,
        updated_at: parse_ts(r.column("updated_at"))?,
        provisioning_estimate: r
            .column::<Option<&str>>("provisioning_estimate")
            .map(parse_json)
            .transpose()?,
        requires_install_configuration: r.column("requires_install_configuration"),
        service_id: r
            .column::<Option<String>>("service_id")
            .map(ServiceId::from_trusted),
        result: r
            .column::<Option<String>>("result")
            .map(|text| RawJson::from_text(text).map_err(|_| corrupt("order result")))
            .transpose()?,
        failure: r
            .column::<Option<&str>>("failure")
            .map(parse_json)
            .transpose()?,
    })
}

pub(super) fn service_from_row(r: &db::Row) -> StoreResult<Service> {
    Ok(Service {
        id: ServiceId::from_trusted(r.get("id")),
        order_id: OrderId::from_trusted(r.get("order_id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        product_id: r.get("product_id"),
        status: ServiceStatus::parse(r.get("status")).ok_or_else(|| corrupt("service status"))?,
        display_name: r.get("display_name"),
        image: r.get("image"),
        region: r.get("region"),
        authorized_key: r.get("authorized_key"),
        host: r.get("host"),
        ssh_port: r
            .get::<Option<i64>, _>("ssh_port")
            .and_then(|p| u16::try_from(p).ok()),
        ssh_username: r.get("ssh_username"),
        host_key_fingerprint: r.get("host_key_fingerprint"),
        host_public_key: r.get("host_public_key"),
        backups_enabled: r.get("backups_enabled"),
        machine_size: r
            .get::<Option<&str>, _>("machine_size")
            .map(parse_json)
            .transpose()?,
        private_key_sealed: r.get("private_key_sealed"),
        lease_seconds: r.get("lease_seconds"),
        expires_at: r
            .get::<Option<&str>, _>("expires_at")
            .map(parse_ts)
            .transpose()?,
        activated_at: r
            .get::<Option<&str>, _>("activated_at")
            .map(parse_ts)
            .transpose()?,
        management_capabilities: parse_json(r.get("management_capabilities"))?,
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

pub(super) fn job_from_row(r: &db::Row) -> StoreResult<Job> {
    Ok(Job {
        id: JobId::from_trusted(r.get("id")),
        kind: r.get("kind"),
        payload: parse_json(r.get("payload"))?,
        status: JobStatus::parse(r.get("status")).ok_or_else(|| corrupt("job status"))?,
        attempts: r.get("attempts"),
        max_attempts: r.get("max_attempts"),
        run_at: parse_ts(r.get("run_at"))?,
        locked_by: r.get("locked_by"),
        locked_until: r
            .get::<Option<&str>, _>("locked_until")
            .map(parse_ts)
            .transpose()?,
        last_error: r.get("last_error"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

pub(super) fn payment_from_row(r: &db::Row) -> StoreResult<Payment> {
    Ok(Payment {
        id: PaymentId::from_trusted(r.get("id")),
        account_id: r
            .get::<Option<String>, _>("account_id")
            .map(AccountId::from_trusted),
        order_id: r
            .get::<Option<String>, _>("order_id")
            .map(OrderId::from_trusted),
        purpose: PaymentPurpose::parse(r.get("purpose"))
            .ok_or_else(|| corrupt("payment purpose"))?,
        rail: PaymentMethod::parse(r.get("rail")).ok_or_else(|| corrupt("payment rail"))?,
        amount_minor: r.get("amount_minor"),
        currency: Currency::parse(r.get("currency")).ok_or_else(|| corrupt("currency"))?,
        status: PaymentState::parse(r.get("status")).ok_or_else(|| corrupt("payment status"))?,
        session_id: r.get("session_id"),
        checkout_url: r.get("checkout_url"),
        payment_reference: r.get("payment_reference"),
        challenge_id: r.get("challenge_id"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
    })
}

pub(super) fn approval_from_row(r: &db::Row) -> StoreResult<Approval> {
    Ok(Approval {
        id: ApprovalId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        agent_id: AgentId::from_trusted(r.get("agent_id")),
        order_id: r
            .get::<Option<String>, _>("order_id")
            .map(OrderId::from_trusted),
        checkout_id: r
            .get::<Option<String>, _>("checkout_id")
            .map(CheckoutId::from_trusted),
        status: ApprovalStatus::parse(r.get("status")).ok_or_else(|| corrupt("approval status"))?,
        // A tier is stored as its digits (TEXT, as it was when tiers were labels).
        tier: r
            .get::<&str, _>("tier")
            .parse()
            .map_err(|_| corrupt("approval tier"))?,
        rule_code: r.get("rule_code"),
        reason: r.get("reason"),
        amount_minor: r.get("amount_minor"),
        currency: r.get("currency"),
        decision_reason: r.get("decision_reason"),
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
        decided_at: r
            .get::<Option<&str>, _>("decided_at")
            .map(parse_ts)
            .transpose()?,
    })
}

pub(super) fn checkout_from_row(r: &db::Row) -> StoreResult<Checkout> {
    Ok(Checkout {
        id: CheckoutId::from_trusted(r.get("id")),
        account_id: AccountId::from_trusted(r.get("account_id")),
        agent_id: AgentId::from_trusted(r.get("agent_id")),
        status: CheckoutStatus::parse(r.get("status")).ok_or_else(|| corrupt("checkout status"))?,
        currency: r.get("currency"),
        lines: parse_json(r.get("items"))?,
        total_minor: r.get("total_minor"),
        merchant_name: r.get("merchant_name"),
        merchant_domain: r.get("merchant_domain"),
        category: r.get("category"),
        metadata: r
            .get::<Option<&str>, _>("metadata")
            .map(parse_json)
            .transpose()?,
        rule_result: r.get("rule_result"),
        rule_name: r.get("rule_name"),
        reason: r.get("reason"),
        order: r
            .get::<Option<&str>, _>("receipt_order")
            .map(parse_json)
            .transpose()?,
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: parse_ts(r.get("updated_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
    })
}

pub(super) fn login_code_from_row(r: &db::Row) -> StoreResult<LoginCode> {
    Ok(LoginCode {
        code_hash: r.get("code_hash"),
        account_id: AccountId::from_trusted(r.get("account_id")),
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
        used_at: r
            .get::<Option<&str>, _>("used_at")
            .map(parse_ts)
            .transpose()?,
    })
}

pub(super) fn dashboard_session_from_row(r: &db::Row) -> StoreResult<DashboardSession> {
    Ok(DashboardSession {
        secret_hash: r.get("secret_hash"),
        account_id: AccountId::from_trusted(r.get("account_id")),
        key_id: r
            .get::<Option<String>, _>("key_id")
            .map(KeyId::from_trusted),
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
        ended_at: r
            .get::<Option<&str>, _>("ended_at")
            .map(parse_ts)
            .transpose()?,
    })
}

pub(super) fn device_grant_from_row(r: &db::Row) -> StoreResult<DeviceGrant> {
    Ok(DeviceGrant {
        device_code_hash: r.get("device_code_hash"),
        user_code: r.get("user_code"),
        customer_email: r.get("customer_email"),
        agent_name: r.get("agent_name"),
        status: r.get("status"),
        account_id: r
            .get::<Option<String>, _>("account_id")
            .map(AccountId::from_trusted),
        agent_id: r
            .get::<Option<String>, _>("agent_id")
            .map(AgentId::from_trusted),
        interval_seconds: r.get("interval_seconds"),
        last_polled_at: r
            .get::<Option<&str>, _>("last_polled_at")
            .map(parse_ts)
            .transpose()?,
        created_at: parse_ts(r.get("created_at"))?,
        expires_at: parse_ts(r.get("expires_at"))?,
    })
}

pub(super) fn agent_from_row(r: &dyn Columns) -> StoreResult<Agent> {
    Ok(Agent {
        id: AgentId::from_trusted(r.column("id")),
        account_id: AccountId::from_trusted(r.column("account_id")),
        name: r.column("name"),
        description: r.column("description"),
        status: AgentStatus::parse(r.column("status")).ok_or_else(|| corrupt("agent status"))?,
        soul: r.column("soul"),
        trusted_stores: parse_json(r.column("trusted_stores"))?,
        blocked_stores: parse_json(r.column("blocked_stores"))?,
        requires_confirmation: r.column("requires_confirmation"),
        agent_type: r.column("agent_type"),
        platform: r.column("platform"),
        capabilities: parse_json(r.column("capabilities"))?,
        connected_at: r
            .column::<Option<&str>>("connected_at")
            .map(parse_ts)
            .transpose()?,
        created_at: parse_ts(r.column("created_at"))?,
        updated_at: parse_ts(r.column("updated_at"))?,
    })
}

pub(super) fn rule_from_row(r: &db::Row) -> StoreResult<AgentRule> {
    rule_from_columns(r, "")
}

/// A rule from the columns named `{prefix}id`, `{prefix}code`, ... (a join names them apart from
/// the other table's).
pub(super) fn rule_from_columns(r: &dyn Columns, prefix: &str) -> StoreResult<AgentRule> {
    let column = |name: &str| format!("{prefix}{name}");
    let params: Value = parse_json(r.column(column("params").as_str()))?;
    let kind: &str = r.column(column("kind").as_str());
    Ok(AgentRule {
        agent_id: AgentId::from_trusted(r.column(column("agent_id").as_str())),
        rule: Rule {
            id: r.column(column("id").as_str()),
            code: r.column(column("code").as_str()),
            name: r.column(column("name").as_str()),
            enabled: r.column(column("enabled").as_str()),
            action: RuleAction::parse(r.column(column("action").as_str()))
                .ok_or_else(|| corrupt("rule action"))?,
            kind: RuleKind::parse(kind, &params).map_err(|_| corrupt("rule params"))?,
        },
        created_at: parse_ts(r.column(column("created_at").as_str()))?,
        updated_at: parse_ts(r.column(column("updated_at").as_str()))?,
    })
}
