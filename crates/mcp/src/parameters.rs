//! Tool arguments parsed the way REST parses a body: a bad argument is a tool result with the
//! same error object (`validation_error` naming the field by its JSON path), not the SDK's
//! serde text.

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::borrow::Cow;
use storefront_domain::input::from_value;
use storefront_domain::DomainError;

/// A tool's arguments, or why they are not acceptable.
///
/// Named `Parameters` on purpose: rmcp's `#[tool]` derives a tool's input schema from the
/// argument whose type is named so, and this one advertises exactly `T`'s schema.
pub struct Parameters<T>(pub Result<T, DomainError>);

impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl<'a, S, T: DeserializeOwned> FromContextPart<ToolCallContext<'a, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'a, S>) -> Result<Self, rmcp::ErrorData> {
        let arguments = Value::Object(context.arguments.take().unwrap_or_default());
        Ok(Self(from_value(&arguments)))
    }
}
