//! `/metrics` formats. The registry encodes OpenMetrics text; scrapers that ask for it
//! (`Accept: application/openmetrics-text`, as Prometheus does) get it unchanged. Everyone
//! else (curl, `promtool check metrics`, older scrapers) gets the Prometheus text format
//! 0.0.4, which differs only in metadata: counter families are named with their `_total`
//! suffix, and there are no `# UNIT` or `# EOF` lines.

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the client's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("application/openmetrics-text")))
}

/// OpenMetrics text (as `prometheus-client` writes it) to Prometheus text 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // Families come as HELP, TYPE, (UNIT), samples; a counter's TYPE decides its HELP's name,
    // so hold the HELP line until the TYPE line arrives.
    let mut held_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, held_help.take(), None);
            held_help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                "gaugehistogram" | "stateset" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            flush_help(&mut out, held_help.take(), Some(&name));
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            continue;
        }
        flush_help(&mut out, held_help.take(), None);
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, held_help.take(), None);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, name: Option<&str>) {
    if let Some((family, text)) = help {
        out.push_str("# HELP ");
        out.push_str(name.unwrap_or(family));
        out.push(' ');
        out.push_str(text);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_counter_metadata_and_drops_openmetrics_lines() {
        let om = "# HELP ward_requests Requests.\n# TYPE ward_requests counter\nward_requests_total{a=\"b\"} 1\n\
                  # HELP ward_up_seconds Up.\n# TYPE ward_up_seconds gauge\n# UNIT ward_up_seconds seconds\nward_up_seconds 3\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP ward_requests_total Requests.\n# TYPE ward_requests_total counter\nward_requests_total{a=\"b\"} 1\n\
             # HELP ward_up_seconds Up.\n# TYPE ward_up_seconds gauge\nward_up_seconds 3\n"
        );
        assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
