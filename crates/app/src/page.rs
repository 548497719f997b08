//! Cursor pagination shared by every list: `limit` 1–100 (default 20) and an opaque cursor
//! that is the id of the last item of the previous page.

use serde::Serialize;
use storefront_domain::DomainError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    /// Validates raw query values; `param` names are the query parameters.
    pub fn parse(limit: Option<i64>, cursor: Option<String>) -> Result<Self, DomainError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => l as u32,
            Some(l) => {
                return Err(DomainError::validation(
                    "limit",
                    format!("limit {l} is out of range."),
                    format!("Use a limit from 1 to {MAX_LIMIT}."),
                ))
            }
        };
        let cursor = cursor.filter(|c| !c.is_empty());
        Ok(Self { limit, cursor })
    }

    pub fn invalid_cursor() -> DomainError {
        DomainError::validation(
            "cursor",
            "The cursor is not one this list returned.",
            "Pass the next_cursor value of the previous page unchanged, or omit it to start over.",
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only says there is more.
    pub fn from_fetched(mut items: Vec<T>, limit: u32, id_of: impl Fn(&T) -> String) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(id_of) } else { None };
        Self { items, next_cursor }
    }
}
