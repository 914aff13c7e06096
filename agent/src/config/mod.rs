//! The configuration file: its types (the user-facing contract), loading with precise error
//! locations, validation, and live reload.
//!
//! Every struct denies unknown fields: unlike Istio, a misspelt field is an error, never
//! silently ignored. Values that need parsing (CIDRs, claim keys, algorithms) are parsed while
//! deserializing, so their errors carry file:line:column and the field path too.

mod load;
pub mod locate;
pub mod metrics;
mod types;
pub mod watch;

pub use load::{ConfigError, load_file, parse_str};
pub use types::*;
