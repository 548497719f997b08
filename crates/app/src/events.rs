//! The event log as the use-cases write and read it: each event is built where the change it
//! records is built and commits in that change's transaction ([`crate::ports::Change::events`],
//! [`crate::ports::NewOrder::events`]); agents and owners list them.

use crate::app::{store_failure, App};
use crate::machines::ServiceView;
use crate::page::{Page, PageRequest};
use crate::ports::EventFilter;
use crate::principal::Principal;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use storefront_domain::agent::Approval;
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{AccountId, AgentId, EventId};
use storefront_domain::money::display_amount;
use storefront_domain::order::Order;
use storefront_domain::service::Service;
use storefront_domain::timestamp::format;
use storefront_domain::{DomainError, ErrorCode};

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    /// `evt_...`, time-ordered: pass the last one seen as `after` to continue.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: String,
    /// The object as the API showed it at that moment (an order, ...), without secrets.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Value,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            kind: e.kind,
            created_at: format(&e.created_at),
            data: Value::clone(&e.data),
        }
    }
}

impl App {
    /// The events `kinds` of an order in its current state, to commit with that state. None for
    /// an order of no account (there is nobody to tell).
    pub(crate) fn order_events(&self, kinds: &[EventType], order: &Order) -> Vec<Event> {
        let Some(account) = &order.account_id else {
            return Vec::new();
        };
        let mut data = serde_json::to_value(self.order_view(order)).unwrap_or_default();
        // Signed URLs are bearer secrets: an event keeps none.
        crate::secrets::UrlSigner::strip_signatures(&mut data);
        let data = std::sync::Arc::new(data);
        kinds
            .iter()
            .map(|kind| {
                Event::new(
                    *kind,
                    account.clone(),
                    order.agent_id.clone(),
                    data.clone(),
                    order.updated_at,
                )
            })
            .collect()
    }

    /// The event `kind` of a service in its current state, for the agent that bought it (if an
    /// agent did).
    pub(crate) fn service_event(
        &self,
        kind: EventType,
        service: &Service,
        agent: Option<AgentId>,
    ) -> Event {
        let data = serde_json::to_value(ServiceView::from(service)).unwrap_or_default();
        Event::new(
            kind,
            service.account_id.clone(),
            agent,
            data,
            service.updated_at,
        )
    }

    /// The event `kind` of an approval in its current state (asked for, or decided).
    pub(crate) fn approval_event(&self, kind: EventType, approval: &Approval) -> Event {
        let at = approval.decided_at.unwrap_or(approval.created_at);
        Event::new(
            kind,
            approval.account_id.clone(),
            Some(approval.agent_id.clone()),
            serde_json::to_value(approval).unwrap_or_default(),
            at,
        )
    }

    /// `approval.requested`, with what an owner needs to decide from a phone: who asks, for
    /// what, how much (formatted), why, and where to decide.
    pub(crate) async fn approval_requested_event(
        &self,
        approval: &Approval,
        product_id: &str,
    ) -> Result<Event, DomainError> {
        let mut event = self.approval_event(EventType::ApprovalRequested, approval);
        let agent_name = self
            .store
            .get_agent(&approval.agent_id)
            .await
            .map_err(store_failure)?
            .map(|a| a.name);
        let product_name = self.catalog.get(product_id).map(|p| p.name.clone());
        if let Value::Object(data) = std::sync::Arc::make_mut(&mut event.data) {
            let base = &self.settings.base_url;
            data.insert("agent_name".into(), agent_name.into());
            data.insert("product_id".into(), product_id.into());
            data.insert("product_name".into(), product_name.into());
            data.insert(
                "amount_display".into(),
                display_amount(approval.amount_minor, &approval.currency).into(),
            );
            data.insert(
                "review_url".into(),
                format!("{base}/dashboard/approvals#approval-{}", approval.id).into(),
            );
        }
        Ok(event)
    }

    /// The agent that bought a service, if an agent did (for its events).
    pub(crate) async fn buyer_of(&self, service: &Service) -> Result<Option<AgentId>, DomainError> {
        Ok(self.load_order(&service.order_id).await?.agent_id)
    }

    /// `GET /api/v1/events`: an owner key sees its account's events, an agent key its own
    /// agent's; oldest first, after the event `after`, of the types asked for (all by default).
    pub async fn list_events(
        &self,
        principal: &Principal,
        after: Option<String>,
        kinds: &[String],
        page: &PageRequest,
    ) -> Result<Page<EventView>, DomainError> {
        let cursor = self
            .event_cursor(principal, after, kinds, Start::Oldest)
            .await?;
        let events = self.fetch_events(&cursor, page.limit).await?;
        let page = Page::from_fetched(events, page.limit, |e| e.id.to_string());
        Ok(Page {
            items: page.items.iter().map(EventView::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// A reader's place in the log (`GET /api/v1/events/stream` and the like), checked once:
    /// after the event `after` (one of the principal's), else from `start`.
    pub async fn event_cursor(
        &self,
        principal: &Principal,
        after: Option<String>,
        kinds: &[String],
        start: Start,
    ) -> Result<EventCursor, DomainError> {
        let account = principal.require_account()?.clone();
        let agent = principal.agent_id().cloned();
        let kinds = parse_event_types(kinds)?;
        let after = match after.filter(|a| !a.is_empty()) {
            Some(a) => Some(self.check_event_cursor(&account, agent.as_ref(), a).await?),
            None if start == Start::Now => self
                .store
                .newest_event(&account, agent.as_ref())
                .await
                .map_err(store_failure)?
                .map(|id| id.to_string()),
            None => None,
        };
        Ok(EventCursor {
            account,
            agent,
            kinds,
            after,
        })
    }

    /// The next events after `cursor` (at most `limit + 1`, as the store reads a page), moving
    /// it past them.
    pub async fn next_events(
        &self,
        cursor: &mut EventCursor,
        limit: u32,
    ) -> Result<Vec<EventView>, DomainError> {
        let events = self.fetch_events(cursor, limit).await?;
        if let Some(last) = events.last() {
            cursor.after = Some(last.id.to_string());
        }
        Ok(events.iter().map(EventView::from).collect())
    }

    /// Up to `limit + 1` events after `cursor` (the extra one says whether a page has more).
    async fn fetch_events(
        &self,
        cursor: &EventCursor,
        limit: u32,
    ) -> Result<Vec<Event>, DomainError> {
        let filter = EventFilter {
            account: cursor.account.clone(),
            agent: cursor.agent.clone(),
            after: cursor.after.clone(),
            kinds: cursor.kinds.clone(),
            limit,
        };
        self.store.list_events(&filter).await.map_err(store_failure)
    }

    /// `after` if it names an event the reader may see: its place in the log is where reading
    /// starts. Anything else is refused, not guessed at.
    async fn check_event_cursor(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        after: String,
    ) -> Result<String, DomainError> {
        let unknown = || {
            DomainError::validation(
                "after",
                format!("'{after}' is not one of your events."),
                "Pass the id of the last event you saw (evt_...), or omit it to start at the oldest.",
            )
        };
        let id = EventId::parse(&after).ok_or_else(unknown)?;
        let event = self
            .store
            .get_event(&id)
            .await
            .map_err(store_failure)?
            .ok_or_else(unknown)?;
        let visible = &event.account_id == account
            && agent.is_none_or(|agent| event.agent_id.as_ref() == Some(agent));
        if !visible {
            return Err(unknown());
        }
        Ok(after)
    }
}

/// Where a reader without a cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the first event (a list).
    Oldest,
    /// After the newest event there is now (a live stream).
    Now,
}

/// A checked place in the log of an account (or of one agent of it), of some types.
#[derive(Debug, Clone)]
pub struct EventCursor {
    account: AccountId,
    agent: Option<AgentId>,
    kinds: Vec<EventType>,
    after: Option<String>,
}

/// Event type names as a caller sent them (empty ones ignored), `type` named when one is unknown.
fn parse_event_types(kinds: &[String]) -> Result<Vec<EventType>, DomainError> {
    kinds
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| {
            EventType::parse(k).ok_or_else(|| {
                DomainError::validation(
                    "type",
                    format!("'{k}' is not an event type."),
                    format!(
                        "Use one of: {}.",
                        EventType::ALL.map(EventType::as_str).join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// How many event streams are open per key, so that one key cannot hold every connection.
#[derive(Debug, Clone, Default)]
pub struct StreamCounts(Arc<Mutex<HashMap<String, usize>>>);

/// An open event stream's place in [`StreamCounts`]; dropping it (the stream ends) frees it.
#[derive(Debug)]
pub struct StreamPermit {
    counts: StreamCounts,
    key: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Event streams one key may hold open at once (per process).
pub const STREAMS_PER_KEY: usize = 5;

impl App {
    /// Admits a new event stream for `principal`'s key, or refuses with `rate_limited` when the
    /// key already holds [`STREAMS_PER_KEY`] of them.
    pub fn open_event_stream(&self, principal: &Principal) -> Result<StreamPermit, DomainError> {
        let account = principal.require_account()?;
        let key = match principal {
            Principal::Owner {
                key_id: Some(k), ..
            }
            | Principal::Agent { key_id: k, .. } => k.to_string(),
            // A dashboard session: its account's sessions share one bound.
            _ => format!("session:{account}"),
        };
        let mut counts = self
            .outbound
            .streams
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let open = counts.entry(key.clone()).or_default();
        if *open >= STREAMS_PER_KEY {
            return Err(DomainError::new(
                ErrorCode::RateLimited,
                format!("This key already has {STREAMS_PER_KEY} event streams open."),
                "Close a stream you no longer read, or resume one with Last-Event-ID instead of opening another.",
            )
            .with_retry_after(30));
        }
        *open += 1;
        Ok(StreamPermit {
            counts: self.outbound.streams.clone(),
            key,
        })
    }
}
