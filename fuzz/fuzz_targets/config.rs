//! Config files: arbitrary text through `config::parse_str` (YAML, types, cross-field checks
//! and the error locator).
//!
//! Properties checked besides "no panic":
//! - a refusal names the origin and a 1-based line and column inside (or just past) the text;
//! - an accepted config serializes back to YAML that is accepted again, with the same
//!   serialization (the contract round-trips, so `/config_dump` output is a valid config).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward::config::{self, ConfigError};

const ORIGIN: &str = "fuzz.yaml";

/// Lines as YAML counts them: `\r\n`, a lone `\r` and `\n` each end one (YAML 1.2 §5.4),
/// which is what serde's and saphyr's line numbers are based on.
fn yaml_lines(text: &str) -> usize {
    let b = text.as_bytes();
    let breaks = (0..b.len()).filter(|&i| b[i] == b'\n' || (b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'))).count();
    breaks + 1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse_str(text, ORIGIN) {
        Ok(cfg) => {
            let yaml =
                serde_yaml_ng::to_string(&cfg).unwrap_or_else(|e| panic!("accepted config does not serialize: {e}"));
            let again = config::parse_str(&yaml, "roundtrip.yaml").unwrap_or_else(|e| {
                panic!("accepted config does not round-trip: {e}\n--- input\n{text}\n--- serialized\n{yaml}")
            });
            let yaml2 =
                serde_yaml_ng::to_string(&again).unwrap_or_else(|e| panic!("re-parsed config does not serialize: {e}"));
            assert_eq!(yaml, yaml2, "serialization is not stable across a round trip");
        }
        Err(ConfigError::Invalid(inv)) => {
            assert_eq!(inv.origin, ORIGIN);
            let lines = yaml_lines(text);
            assert!(
                inv.line >= 1 && inv.line <= lines + 1,
                "line {} outside 1..={} for {text:?}: {inv}",
                inv.line,
                lines + 1
            );
            assert!(inv.column >= 1, "column 0: {inv}");
            let shown = inv.to_string();
            assert!(
                shown.starts_with(&format!("{ORIGIN}:{}:{}: ", inv.line, inv.column)),
                "error does not lead with file:line:column: {shown}"
            );
        }
        Err(e @ ConfigError::Read { .. }) => panic!("parse_str read a file: {e}"),
    }
});
