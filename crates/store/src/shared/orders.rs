//! Orders, the conditional changes that move them, and the ledger.

use async_trait::async_trait;
use sqlx::Row as _;
use storefront_app::page::PageRequest;
use storefront_app::ports::{
    Applied, Change, IdempotencyCompletion, IdempotencyRef, NewOrder, OrderFilter, OrderStore,
    Refusal, StoreError, StoreResult,
};
use storefront_domain::event::Event;
use storefront_domain::ids::{AccountId, LedgerEntryId, OrderId};
use storefront_domain::json::RawJson;
use storefront_domain::ledger::{LedgerEntry, LedgerMovement};
use storefront_domain::order::{Order, OrderStatus};
use storefront_domain::timestamp::{format as ts, Timestamp};

use super::common::{backend, commit, execute, newest_first, placeholders, to_json, Statements};
use super::db;
use super::events::{
    insert_event_rows_of_locked, push_events, push_events_after_debit, queue_deliveries,
};
use super::governance::{
    check_budget, insert_approval_row, update_approval_row, update_checkout_row,
};
use super::idempotency::{complete_key, insert_completed_key, push_completed_key};
use super::jobs::insert_job_row;
use super::payments::{insert_payment_row, update_payment_row};
use super::quotes::{insert_quote_row, push_quote_rows};
use super::rows::{every_row, ledger_from_row, order_from_row, Rows};
use super::services::{insert_service_row, insert_token_rows, update_service_row};

#[async_trait]
impl OrderStore for db::Adapter {
    async fn record_movement(
        &self,
        movement: &LedgerMovement,
        now: Timestamp,
    ) -> StoreResult<Result<LedgerEntry, Refusal>> {
        let mut tx = self.begin().await?;
        let entry = apply_movement(&mut tx, movement, now).await?;
        if entry.is_ok() {
            commit(tx).await?;
        }
        Ok(entry)
    }

    async fn list_ledger(
        &self,
        account: &AccountId,
        page: &PageRequest,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let mut params = vec![account.as_str()];
        let sql = newest_first("ledger_entries", "", page, &mut params);
        self.read_rows(&sql, &params, |rows| every_row(rows, ledger_from_row))
            .await
    }

    async fn ledger_sum(&self, account: &AccountId) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM ledger_entries WHERE account_id = $1",
        )
        .bind(account.as_str())
        .fetch_one(self.reader())
        .await
        .map_err(backend)
    }

    // Every early return drops the transaction, which rolls it back: a refused or stale unit
    // writes nothing. The events and the charge come last: on PostgreSQL both lock the account's
    // row until the commit, and concurrent orders of one account queue on that lock, so it is
    // held for as few statements as possible.
    async fn insert_order(&self, new: &NewOrder<'_>) -> StoreResult<Applied> {
        if let Some(chained) =
            ChainedOrder::of(new).filter(|_| db::CHAINS_STATEMENTS || db::WRITES_IN_CTES)
        {
            return chained.insert(self).await;
        }
        let o = new.order;
        let mut tx = self.begin().await?;
        if let Some(fingerprint) = new.records_key {
            let completion = new.completes.ok_or_else(|| {
                StoreError::Backend("an order that records its key needs its answer".into())
            })?;
            if !insert_completed_key(&mut tx, completion, fingerprint, o.created_at).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some(guard) = new.budget {
            if let Err(refusal) = check_budget(&mut tx, guard).await? {
                return Ok(Applied::Refused(refusal));
            }
        }
        if let Some((service, expected)) = new.updates_service {
            if !update_service_row(&mut tx, service, expected).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some(quote) = new.quote {
            insert_quote_row(&mut tx, quote).await?;
        }
        if !insert_order_row(&mut tx, o, new.idempotency).await? {
            return Ok(Applied::Stale);
        }
        if let Some(service) = new.service {
            insert_service_row(&mut tx, service).await?;
        }
        for job in new.jobs {
            insert_job_row(&mut tx, job).await?;
        }
        insert_token_rows(&mut tx, new.resource_tokens).await?;
        if let Some(approval) = new.approval {
            insert_approval_row(&mut tx, approval).await?;
        }
        if let Some(payment) = new.payment {
            insert_payment_row(&mut tx, payment).await?;
        }
        if let Some(c) = new.completes.filter(|_| new.records_key.is_none()) {
            complete_key(&mut tx, c).await?;
        }
        // The charge, then the events: on PostgreSQL the charge's update locks the account's
        // row, which is the lock that orders the account's events, so both are taken once and
        // held only for these last statements and the commit.
        if let Some(charge) = new.charge {
            if let Err(refusal) = apply_movement(&mut tx, charge, o.created_at).await? {
                return Ok(Applied::Refused(refusal));
            }
        }
        insert_event_rows_of_locked(&mut tx, new.events, new.charge.map(|c| &c.account_id)).await?;
        commit(tx).await?;
        Ok(Applied::Done)
    }

    async fn apply_change(&self, change: &Change<'_>) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
        if let Some((id, kind, at)) = change.webhook_event {
            let inserted = sqlx::query("INSERT INTO webhook_events (id, kind, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                .bind(id)
                .bind(kind)
                .bind(ts(&at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            if inserted == 0 {
                return Ok(Applied::Stale);
            }
        }
        if let Some((payment, expected)) = change.payment {
            if !update_payment_row(&mut tx, payment, expected).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some(payment) = change.new_payment {
            insert_payment_row(&mut tx, payment).await?;
        }
        if let Some((approval, expected)) = change.approval {
            if !update_approval_row(&mut tx, approval, expected).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some((checkout, expected)) = change.checkout {
            if !update_checkout_row(&mut tx, checkout, expected).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some(approval) = change.new_approval {
            insert_approval_row(&mut tx, approval).await?;
        }
        if let Some((order, expected)) = change.order {
            if !update_order_row(&mut tx, order, expected).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some((service, expected)) = change.service {
            if !update_service_row(&mut tx, service, expected).await? {
                return Ok(Applied::Stale);
            }
        }
        if let Some((m, at)) = change.movement {
            if let Err(refusal) = apply_movement(&mut tx, m, at).await? {
                return Ok(Applied::Refused(refusal));
            }
        }
        if let Some(service) = change.new_service {
            insert_service_row(&mut tx, service).await?;
        }
        insert_token_rows(&mut tx, change.resource_tokens).await?;
        for job in change.jobs {
            insert_job_row(&mut tx, job).await?;
        }
        insert_event_rows_of_locked(
            &mut tx,
            change.events,
            change.movement.map(|(m, _)| &m.account_id),
        )
        .await?;
        if let Some(c) = change.completes {
            complete_key(&mut tx, c).await?;
        }
        commit(tx).await?;
        Ok(Applied::Done)
    }

    async fn get_order(&self, id: &OrderId) -> StoreResult<Option<Order>> {
        // The read behind every `GET /orders/{id}` (agents poll it): inline where it can be.
        self.read_rows(
            "SELECT * FROM orders WHERE id = $1",
            &[id.as_str()],
            |rows| rows.next_row()?.map(order_from_row).transpose(),
        )
        .await
    }

    async fn find_order_by_idempotency_key(
        &self,
        key: &IdempotencyRef,
    ) -> StoreResult<Option<Order>> {
        let row = sqlx::query(
            "SELECT * FROM orders WHERE idempotency_scope = $1 AND idempotency_route = $2 AND idempotency_key = $3",
        )
        .bind(&key.scope)
        .bind(&key.route)
        .bind(&key.key)
        .fetch_optional(self.reader())
        .await
        .map_err(backend)?;
        row.as_ref().map(|r| order_from_row(r)).transpose()
    }

    async fn list_orders(&self, account: &AccountId, f: &OrderFilter) -> StoreResult<Vec<Order>> {
        // Only the conditions that apply (see `newest_first`); every value is text, which lets
        // the read run inline where it can (agents poll their orders).
        let mut filters = String::new();
        let mut params: Vec<&str> = vec![account.as_str()];
        for (column, value) in [
            ("status", f.status.map(|s| s.as_str())),
            ("product_id", f.product_id.as_deref()),
        ] {
            if let Some(value) = value {
                params.push(value);
                filters.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        let sql = newest_first("orders", &filters, &f.page, &mut params);
        let read = |rows: &mut dyn Rows| every_row(rows, order_from_row);
        // Only the account and the cursor are in the index: a filtered page may walk every
        // order of the account to fill itself, too long to hold a runtime thread for.
        if f.status.is_some() || f.product_id.is_some() {
            self.read_rows_pooled(&sql, &params, read).await
        } else {
            self.read_rows(&sql, &params, read).await
        }
    }
}

/// An order placed in one unit (its key inserted done) and paid from credit, with nothing but
/// its quote and its events (all of its account) committing with it: the instant order of an
/// owner or of an agent without budgets. Its writes (key, quote, order, debit, ledger entry,
/// events) go to the database in one call and their answers are read afterwards:
///
/// - on SQLite (`db::CHAINS_STATEMENTS`), whose every statement is a hand-off to the
///   connection's thread and back, as `;`-separated statements; the unit's savepoint takes back
///   what a lost race or a refusal wrote;
/// - on PostgreSQL (`db::WRITES_IN_CTES`), whose extended protocol takes one statement per call,
///   as one statement of data-modifying CTEs (begin, this statement, commit: three round trips
///   instead of eight); the debit runs only when the key and the order were inserted, and the
///   entry and the events only after the debit, so a replay never waits on the account's row and
///   the events take their positions under its lock; a refusal rolls the transaction back.
///
/// Both are the SQL of the statement-by-statement path (the same `push_*` functions build it).
struct ChainedOrder<'a> {
    new: &'a NewOrder<'a>,
    completion: &'a IdempotencyCompletion,
    fingerprint: &'a str,
    charge: &'a LedgerMovement,
}

/// What a one-unit order's writes answered, whichever form they took.
struct UnitAnswers {
    key_written: bool,
    order_written: bool,
    /// The debit's balance after, the account's low-balance threshold and its currency; `None`
    /// when the debit matched no row (it would overdraw, or it did not run).
    debited: Option<(i64, Option<i64>, String)>,
    entry_written: bool,
    /// Whether the account has an enabled webhook endpoint (then the events' deliveries are
    /// queued).
    has_endpoints: bool,
}

impl<'a> ChainedOrder<'a> {
    fn of(new: &'a NewOrder<'a>) -> Option<Self> {
        let (Some(fingerprint), Some(completion), Some(charge)) =
            (new.records_key, new.completes, new.charge)
        else {
            return None;
        };
        let alone = new.budget.is_none()
            && new.updates_service.is_none()
            && new.service.is_none()
            && new.jobs.is_empty()
            && new.resource_tokens.is_empty()
            && new.approval.is_none()
            && new.payment.is_none();
        let one_account =
            !new.events.is_empty() && new.events.iter().all(|e| e.account_id == charge.account_id);
        (alone && one_account).then_some(Self {
            new,
            completion,
            fingerprint,
            charge,
        })
    }

    async fn insert(self, store: &db::Adapter) -> StoreResult<Applied> {
        let (o, charge) = (self.new.order, self.charge.clone());
        // The entry's id and time are known now; its balance is the update's answer.
        let mut entry = ledger_entry(&charge, 0, o.created_at);
        let q = if db::CHAINS_STATEMENTS {
            self.as_chained_statements(&entry)
        } else {
            self.as_one_statement(&entry)
        };
        let with_quote = self.new.quote.is_some();
        let events = self.new.events.to_vec();
        let then: db::Then<Applied> = Box::new(move |conn, answers| {
            Box::pin(async move {
                let answers = if db::CHAINS_STATEMENTS {
                    read_chained_answers(answers, with_quote)?
                } else {
                    read_one_statement_answer(answers)?
                };
                if !answers.key_written || !answers.order_written {
                    // A key or an order under it exists: nothing of this unit stays.
                    return Ok((Applied::Stale, false));
                }
                let Some((balance_after, low_threshold, currency)) = answers.debited else {
                    return Ok((Applied::Refused(refusal(conn, &charge).await?), false));
                };
                entry.balance_after_minor = balance_after;
                if !answers.entry_written {
                    return Err(StoreError::Backend(
                        "the ledger entry of a debit was not written".into(),
                    ));
                }
                record_balance_low(conn, &entry, low_threshold, &currency).await?;
                if answers.has_endpoints {
                    queue_deliveries(conn, &events).await?;
                }
                Ok((Applied::Done, true))
            })
        });
        store.chained(q, then).await
    }

    /// SQLite's form: the statements one after another, after the unit's savepoint.
    fn as_chained_statements(&self, entry: &LedgerEntry) -> Statements<'static> {
        let o = self.new.order;
        let mut q = Statements::new(db::CHAIN_OPENING);
        push_completed_key(&mut q, self.completion, self.fingerprint, o.created_at);
        q.push("; ");
        if let Some(quote) = self.new.quote {
            push_quote_rows(&mut q, std::slice::from_ref(quote));
            q.push("; ");
        }
        push_order_row(&mut q, o, self.new.idempotency);
        q.push("; ");
        push_balance_update(&mut q, self.charge, o.created_at, "");
        q.push("; ");
        // Only after an update that matched: a refused debit writes no entry.
        push_ledger_entry(
            &mut q,
            entry,
            BalanceAfter::AccountRow {
                guard: " AND changes() = 1",
            },
        );
        q.push("; ");
        push_events(&mut q, self.new.events);
        q
    }

    /// PostgreSQL's form: one statement, answering one row of what each CTE returned. The
    /// events' CTE is not read: PostgreSQL runs every data-modifying CTE to completion,
    /// referenced or not.
    fn as_one_statement(&self, entry: &LedgerEntry) -> Statements<'static> {
        let o = self.new.order;
        let mut q = Statements::new("WITH written_key AS (");
        push_completed_key(&mut q, self.completion, self.fingerprint, o.created_at);
        q.push(" RETURNING 1), ");
        if let Some(quote) = self.new.quote {
            q.push("written_quote AS (");
            push_quote_rows(&mut q, std::slice::from_ref(quote));
            q.push("), ");
        }
        q.push("written_order AS (");
        push_order_row(&mut q, o, self.new.idempotency);
        q.push(" RETURNING 1), debit AS (");
        push_balance_update(
            &mut q,
            self.charge,
            o.created_at,
            " AND EXISTS (SELECT 1 FROM written_key) AND EXISTS (SELECT 1 FROM written_order)",
        );
        q.push("), written_entry AS (");
        push_ledger_entry(&mut q, entry, BalanceAfter::DebitAnswer);
        q.push(" RETURNING 1), written_events AS (");
        push_events_after_debit(&mut q, self.new.events);
        q.push(
            ") SELECT (SELECT COUNT(*) FROM written_key), (SELECT COUNT(*) FROM written_order), \
             debit.balance_minor, debit.balance_low_minor, debit.currency, \
             (SELECT COUNT(*) FROM written_entry), \
             EXISTS (SELECT 1 FROM webhook_endpoints WHERE account_id = ",
        )
        .push_bind(self.charge.account_id.as_str().to_owned())
        .push(" AND enabled) FROM (SELECT 1) AS one LEFT JOIN debit ON TRUE");
        q
    }
}

/// The answers of SQLite's chained statements (see `ChainedOrder::as_chained_statements`).
fn read_chained_answers(answers: db::Answers, with_quote: bool) -> StoreResult<UnitAnswers> {
    let mut answers = by_statement(answers).into_iter();
    let mut next = || {
        answers
            .next()
            .ok_or_else(|| StoreError::Backend("a chained statement went unanswered".into()))
    };
    let key = next()?;
    if with_quote {
        next()?;
    }
    let (order, debit, entry, events) = (next()?, next()?, next()?, next()?);
    let debited = match debit.rows.first() {
        Some(row) => Some((
            row.try_get(0).map_err(backend)?,
            row.try_get(1).map_err(backend)?,
            row.try_get(2).map_err(backend)?,
        )),
        None => None,
    };
    let has_endpoints = match events.rows.first() {
        Some(row) => row.try_get::<bool, _>(0).map_err(backend)?,
        None => false,
    };
    Ok(UnitAnswers {
        key_written: key.changed == 1,
        order_written: order.changed == 1,
        debited,
        entry_written: entry.changed == 1,
        has_endpoints,
    })
}

/// The one row of PostgreSQL's statement (see `ChainedOrder::as_one_statement`).
fn read_one_statement_answer(answers: db::Answers) -> StoreResult<UnitAnswers> {
    let row = by_statement(answers)
        .into_iter()
        .next()
        .and_then(|answer| answer.rows.into_iter().next())
        .ok_or_else(|| StoreError::Backend("an order's statement went unanswered".into()))?;
    let count = |i: usize| row.try_get::<i64, _>(i).map_err(backend);
    let balance_after: Option<i64> = row.try_get(2).map_err(backend)?;
    let low_threshold: Option<i64> = row.try_get(3).map_err(backend)?;
    let currency: Option<String> = row.try_get(4).map_err(backend)?;
    Ok(UnitAnswers {
        key_written: count(0)? == 1,
        order_written: count(1)? == 1,
        debited: balance_after
            .zip(currency)
            .map(|(b, c)| (b, low_threshold, c)),
        entry_written: count(5)? == 1,
        has_endpoints: row.try_get(6).map_err(backend)?,
    })
}

/// One statement's answer in a chained call: the rows it returned and the rows it changed.
struct Answer {
    rows: Vec<db::Row>,
    changed: u64,
}

/// Splits a chained call's answers by statement (each statement's rows, then its result).
fn by_statement(answers: db::Answers) -> Vec<Answer> {
    let mut statements = Vec::new();
    let mut rows = Vec::new();
    for answer in answers {
        match answer {
            sqlx::Either::Right(row) => rows.push(row),
            sqlx::Either::Left(done) => statements.push(Answer {
                rows: std::mem::take(&mut rows),
                changed: done.rows_affected(),
            }),
        }
    }
    statements
}

/// Applies a ledger movement inside the caller's transaction: the conditional update refuses an
/// overdraft atomically, then the entry records the balance it produced. On a refusal the
/// caller must roll back (nothing was written by this function, but the unit is incomplete).
async fn apply_movement(
    conn: &mut db::Connection,
    m: &LedgerMovement,
    now: Timestamp,
) -> StoreResult<Result<LedgerEntry, Refusal>> {
    let mut debit = Statements::new("");
    push_balance_update(&mut debit, m, now, "");
    let updated: Option<(i64, Option<i64>, String)> = debit
        .build_query_as()
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some((balance_after, low_threshold, currency)) = updated else {
        return Ok(Err(refusal(conn, m).await?));
    };
    let entry = ledger_entry(m, balance_after, now);
    let mut insert = Statements::new("");
    push_ledger_entry(&mut insert, &entry, BalanceAfter::AccountRow { guard: "" });
    execute(conn, insert).await?;
    record_balance_low(conn, &entry, low_threshold, &currency).await?;
    Ok(Ok(entry))
}

/// The `balance.low` event of an entry that took its account below its threshold, if it did;
/// written under the account's row lock, which the entry's balance update holds.
async fn record_balance_low(
    conn: &mut db::Connection,
    entry: &LedgerEntry,
    low_threshold: Option<i64>,
    currency: &str,
) -> StoreResult<()> {
    if let Some(event) = low_threshold.and_then(|t| Event::balance_low(entry, t, currency)) {
        insert_event_rows_of_locked(conn, &[event], Some(&entry.account_id)).await?;
    }
    Ok(())
}

/// Why a movement's balance update matched no row: the balance it would overdraw.
async fn refusal(conn: &mut db::Connection, m: &LedgerMovement) -> StoreResult<Refusal> {
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance_minor FROM accounts WHERE id = $1")
            .bind(m.account_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    match balance {
        Some(balance_minor) => Ok(Refusal::InsufficientCredits { balance_minor }),
        None => Err(StoreError::NotFound(format!("account {}", m.account_id))),
    }
}

/// The entry a movement writes, with the balance its update produced.
fn ledger_entry(m: &LedgerMovement, balance_after_minor: i64, now: Timestamp) -> LedgerEntry {
    LedgerEntry {
        id: LedgerEntryId::generate_at(now),
        account_id: m.account_id.clone(),
        kind: m.kind,
        amount_minor: m.amount_minor,
        balance_after_minor,
        order_id: m.order_id.clone(),
        description: m.description.clone(),
        created_at: now,
    }
}

/// The conditional balance update of a movement: no row when it would overdraw; otherwise the
/// balance after it, the account's low-balance threshold and its currency. `guard` is appended
/// to its condition.
fn push_balance_update(q: &mut Statements<'_>, m: &LedgerMovement, now: Timestamp, guard: &str) {
    q.push("UPDATE accounts SET balance_minor = balance_minor + ")
        .push_bind(m.amount_minor)
        .push(", updated_at = ")
        .push_bind(ts(&now))
        .push(" WHERE id = ")
        .push_bind(m.account_id.as_str().to_owned())
        .push(" AND balance_minor + ")
        .push_bind(m.amount_minor)
        .push(" >= 0")
        .push(guard)
        .push(" RETURNING balance_minor, balance_low_minor, currency");
}

/// Where a ledger entry's insert reads the balance its debit produced, so the insert can follow
/// the debit without waiting for its answer (the value is `entry.balance_after_minor`'s).
enum BalanceAfter<'g> {
    /// The account's row, which the update just changed (statements that see each other's
    /// changes), when `guard`, appended to the condition, holds.
    AccountRow { guard: &'g str },
    /// The `debit` CTE's answer (CTEs of one statement see only each other's answers); no row
    /// when the debit matched none.
    DebitAnswer,
}

/// The ledger entry's insert.
fn push_ledger_entry(q: &mut Statements<'_>, entry: &LedgerEntry, balance: BalanceAfter<'_>) {
    q.push(
        "INSERT INTO ledger_entries (id, account_id, kind, amount_minor, balance_after_minor, order_id, description, created_at) SELECT ",
    );
    q.separated(", ")
        .push_bind(entry.id.as_str().to_owned())
        .push_bind(entry.account_id.as_str().to_owned())
        .push_bind(entry.kind.as_str())
        .push_bind(entry.amount_minor)
        .push_unseparated(", balance_minor")
        .push_bind(entry.order_id.as_ref().map(|o| o.as_str().to_owned()))
        .push_bind(entry.description.clone())
        .push_bind(ts(&entry.created_at));
    match balance {
        BalanceAfter::AccountRow { guard } => {
            q.push(" FROM accounts WHERE id = ")
                .push_bind(entry.account_id.as_str().to_owned())
                .push(guard);
        }
        BalanceAfter::DebitAnswer => {
            q.push(" FROM debit");
        }
    }
}

/// Inserts an order row; `false` (nothing written) when an order under the same idempotency key
/// exists. Orders without a key get a unique per-order scope so the uniqueness constraint on
/// keys still holds.
async fn insert_order_row(
    conn: &mut db::Connection,
    o: &Order,
    idempotency: Option<&IdempotencyRef>,
) -> StoreResult<bool> {
    let mut insert = Statements::new("");
    push_order_row(&mut insert, o, idempotency);
    Ok(execute(conn, insert).await? == 1)
}

/// The statement of [`insert_order_row`].
fn push_order_row(q: &mut Statements<'_>, o: &Order, idempotency: Option<&IdempotencyRef>) {
    let (scope, route, key) = match idempotency {
        Some(k) => (k.scope.clone(), k.route.clone(), k.key.clone()),
        None => (o.id.to_string(), String::new(), o.id.to_string()),
    };
    q.push(
        "INSERT INTO orders (id, account_id, status, payment_status, payment_method, product_id, quantity,
                             configuration, configuration_warnings, line_items, total_minor, currency, quote_id,
                             idempotency_scope, idempotency_route, idempotency_key,
                             provisioning_estimate, requires_install_configuration, service_id, result, failure,
                             created_at, updated_at, agent_id) VALUES (",
    );
    q.separated(", ")
        .push_bind(o.id.as_str().to_owned())
        .push_bind(o.account_id.as_ref().map(|a| a.as_str().to_owned()))
        .push_bind(o.status.as_str())
        .push_bind(o.payment_status.as_str())
        .push_bind(o.payment_method.as_str())
        .push_bind(o.product_id.clone())
        .push_bind(o.quantity)
        .push_bind(to_json(&o.configuration))
        .push_bind(to_json(&o.configuration_warnings))
        .push_bind(to_json(&o.line_items))
        .push_bind(o.total_minor)
        .push_bind(o.currency.as_str().to_owned())
        .push_bind(o.quote_id.as_str().to_owned())
        .push_bind(scope)
        .push_bind(route)
        .push_bind(key)
        .push_bind(o.provisioning_estimate.as_ref().map(to_json))
        .push_bind(o.requires_install_configuration)
        .push_bind(o.service_id.as_ref().map(|s| s.as_str().to_owned()))
        .push_bind(o.result.as_ref().map(|r| r.as_str().to_owned()))
        .push_bind(o.failure.as_ref().map(to_json))
        .push_bind(ts(&o.created_at))
        .push_bind(ts(&o.updated_at))
        .push_bind(o.agent_id.as_ref().map(|a| a.as_str().to_owned()));
    q.push(") ON CONFLICT (idempotency_scope, idempotency_route, idempotency_key) DO NOTHING");
}

/// The status check is part of the UPDATE, so two concurrent transitions (even from two
/// processes) cannot both succeed: the second re-evaluates the WHERE after the first commits
/// and matches nothing. `Ok(false)` when the order was not in an expected state.
async fn update_order_row(
    conn: &mut db::Connection,
    o: &Order,
    expected: &[OrderStatus],
) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders = placeholders(9, expected.len());
    let sql = format!(
        "UPDATE orders SET status = $1, payment_status = $2, service_id = $3, result = $4, failure = $5, updated_at = $6,
                           configuration = $8
         WHERE id = $7 AND status IN ({})",
        placeholders
    );
    let mut query = sqlx::query(&sql)
        .bind(o.status.as_str())
        .bind(o.payment_status.as_str())
        .bind(o.service_id.as_ref().map(|s| s.as_str().to_owned()))
        .bind(o.result.as_ref().map(RawJson::as_str))
        .bind(o.failure.as_ref().map(to_json))
        .bind(ts(&o.updated_at))
        .bind(o.id.as_str())
        .bind(to_json(&o.configuration));
    for status in expected {
        query = query.bind(status.as_str());
    }
    let moved = query
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected()
        == 1;
    if !moved {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
            .bind(o.id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
        return match exists {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("order {}", o.id))),
        };
    }
    Ok(true)
}
