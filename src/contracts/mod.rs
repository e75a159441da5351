//! Every public JSON contract of the product, as serialisable types: what the events carry
//! (`events`), what the status API answers and takes (`status`), what the plan and backfill
//! functions answer and take (`plan`), the ledger's notices (`notices`), and the `export`
//! command's JSON lines (`cli`); with the run vocabulary they share with the ledger (`run`) and
//! exact amounts (`amount`).
//!
//! The JSON is the contract, not the Rust: field names, and whether a field is left out or
//! `null`, are fixed by `tests/fixtures/contracts/` (`tests/contracts.rs` serialises each type
//! against its fixture and reads the fixture back). Nothing outside this module builds a
//! contract with `json!`; the pipeline builds these values from run records and the functions
//! send them. The module sits low in the layering: of the product it uses only `billing`'s
//! domain types (amounts are formatted by `billing-columnar`'s decimal).

pub mod amount;
pub mod cli;
pub mod events;
pub mod notices;
pub mod plan;
pub mod run;
pub mod status;

pub use amount::Amount;
pub use events::{EventData, EventType};
pub use run::{CopyMethod, FailureCode, RunId, RunState, Trigger};

/// A calendar date as `yyyy-MM-dd`.
pub(crate) mod date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::macros::format_description;

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]");

    pub fn serialize<S: Serializer>(d: &time::Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<time::Date, D::Error> {
        let s = String::deserialize(d)?;
        time::Date::parse(&s, FORMAT).map_err(serde::de::Error::custom)
    }
}

/// An outside request body read into `T`, an error naming the offending field: one of
/// `fields`, or `body` when the body itself is wrong (not JSON, not an object, an unknown field).
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &str,
    fields: &[&'static str],
) -> Result<T, crate::billing::InvalidInput> {
    let de = &mut serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let first = e.path().iter().next().and_then(|seg| match seg {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let inner = e.into_inner();
        let message = inner.to_string();
        // A required field that is absent is named by serde's message, not by the path.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = first
            .as_deref()
            .or(missing)
            .and_then(|k| fields.iter().find(|f| **f == k))
            .copied()
            .unwrap_or("body");
        // serde_json appends the position; the field already says where.
        let message = match message.rsplit_once(" at line ") {
            Some((m, _)) if inner.is_data() => m.to_string(),
            _ => message,
        };
        crate::billing::InvalidInput::new(field, message)
    })
}
