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
use storefront_domain::agent::Approval;
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{AgentId, EventId};
use storefront_domain::order::Order;
use storefront_domain::service::Service;
use storefront_domain::timestamp::format;
use storefront_domain::DomainError;

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
            data: e.data.clone(),
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
        let account = principal.require_account()?.clone();
        let after = after.filter(|a| !a.is_empty());
        if let Some(a) = &after {
            if EventId::parse(a).is_none() {
                return Err(DomainError::validation(
                    "after",
                    format!("'{a}' is not an event id."),
                    "Pass the id of the last event you saw (evt_...), or omit it to start at the oldest.",
                ));
            }
        }
        let kinds = kinds
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
            .collect::<Result<Vec<_>, _>>()?;
        let filter = EventFilter {
            account,
            agent: principal.agent_id().cloned(),
            after,
            kinds,
            limit: page.limit,
        };
        let events = self
            .store
            .list_events(&filter)
            .await
            .map_err(store_failure)?;
        let page = Page::from_fetched(events, page.limit, |e| e.id.to_string());
        Ok(Page {
            items: page.items.iter().map(EventView::from).collect(),
            next_cursor: page.next_cursor,
        })
    }
}
