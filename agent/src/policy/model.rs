//! Policy types as written in the config file (Istio `AuthorizationPolicy` shape).
//!
//! Patterns, CIDRs and condition keys are parsed while deserializing so a mistake is
//! reported with its file position; nothing unknown is ignored.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::pattern::Pattern;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    pub name: String,
    pub action: Action,
    /// Which destinations this policy protects. None: every protected destination.
    #[serde(default)]
    pub target: Option<Target>,
    /// Absent or empty: an ALLOW matches nothing (Istio's allow-nothing), a DENY nothing.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Allow,
    Deny,
    Audit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
        }
    }
}

/// The destinations a policy protects; also what capture pushes into the kernel.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    /// IPs or CIDRs (v4 or v6).
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// Empty: any port.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Host header patterns (for explicit listeners and captured HTTP alike).
    #[serde(default)]
    pub hosts: Vec<Pattern>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub from: Vec<RuleFrom>,
    #[serde(default)]
    pub to: Vec<RuleTo>,
    #[serde(default)]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleFrom {
    pub source: Source,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// `iss/sub` of the verified token.
    #[serde(default)]
    pub request_principals: Vec<Pattern>,
    #[serde(default)]
    pub not_request_principals: Vec<Pattern>,
    #[serde(default)]
    pub ip_blocks: Vec<Cidr>,
    #[serde(default)]
    pub not_ip_blocks: Vec<Cidr>,
    /// Same as `ipBlocks` for ward: it sees the peer address itself and trusts no XFF.
    #[serde(default)]
    pub remote_ip_blocks: Vec<Cidr>,
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<Cidr>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleTo {
    pub operation: Operation,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    #[serde(default)]
    pub hosts: Vec<Pattern>,
    #[serde(default)]
    pub not_hosts: Vec<Pattern>,
    #[serde(default)]
    pub ports: Vec<PortValue>,
    #[serde(default)]
    pub not_ports: Vec<PortValue>,
    #[serde(default)]
    pub methods: Vec<Pattern>,
    #[serde(default)]
    pub not_methods: Vec<Pattern>,
    #[serde(default)]
    pub paths: Vec<Pattern>,
    #[serde(default)]
    pub not_paths: Vec<Pattern>,
}

/// Istio writes ports as strings (`"8080"`); numbers are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PortRepr", into = "u16")]
pub struct PortValue(pub u16);

#[derive(Deserialize)]
#[serde(untagged)]
enum PortRepr {
    Num(u16),
    Str(String),
}

impl TryFrom<PortRepr> for PortValue {
    type Error = String;
    fn try_from(v: PortRepr) -> Result<Self, String> {
        match v {
            PortRepr::Num(n) => Ok(PortValue(n)),
            PortRepr::Str(s) => {
                s.parse().map(PortValue).map_err(|_| format!("port {s:?} is not a number between 0 and 65535"))
            }
        }
    }
}

impl From<PortValue> for u16 {
    fn from(p: PortValue) -> u16 {
        p.0
    }
}

/// One `when` condition. Values are typed by the key: CIDRs for `source.ip` and
/// `destination.ip`, port numbers for `destination.port`, string patterns otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawCondition", into = "RawCondition")]
pub struct Condition {
    pub key: ConditionKey,
    pub values: Values,
    pub not_values: Values,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Strings(Vec<Pattern>),
    Ips(Vec<Cidr>),
    Ports(Vec<u16>),
}

impl Values {
    pub fn is_empty(&self) -> bool {
        match self {
            Values::Strings(v) => v.is_empty(),
            Values::Ips(v) => v.is_empty(),
            Values::Ports(v) => v.is_empty(),
        }
    }

    fn to_strings(&self) -> Vec<String> {
        match self {
            Values::Strings(v) => v.iter().map(ToString::to_string).collect(),
            Values::Ips(v) => v.iter().map(|c| String::from(*c)).collect(),
            Values::Ports(v) => v.iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCondition {
    key: ConditionKey,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    not_values: Vec<String>,
}

impl TryFrom<RawCondition> for Condition {
    type Error = String;
    fn try_from(raw: RawCondition) -> Result<Self, String> {
        if raw.values.is_empty() && raw.not_values.is_empty() {
            return Err(format!("condition on {} needs values or notValues", raw.key));
        }
        let typed = |list: &[String]| -> Result<Values, String> {
            match raw.key {
                ConditionKey::SourceIp | ConditionKey::DestinationIp => {
                    list.iter().map(|s| s.parse()).collect::<Result<_, _>>().map(Values::Ips)
                }
                ConditionKey::DestinationPort => list
                    .iter()
                    .map(|s| s.parse::<u16>().map_err(|_| format!("{s:?} is not a port number")))
                    .collect::<Result<_, _>>()
                    .map(Values::Ports),
                _ => list.iter().map(|s| Pattern::parse(s)).collect::<Result<_, _>>().map(Values::Strings),
            }
        };
        let values = typed(&raw.values).map_err(|e| format!("{}: values: {e}", raw.key))?;
        let not_values = typed(&raw.not_values).map_err(|e| format!("{}: notValues: {e}", raw.key))?;
        Ok(Condition { key: raw.key, values, not_values })
    }
}

impl From<Condition> for RawCondition {
    fn from(c: Condition) -> RawCondition {
        RawCondition { values: c.values.to_strings(), not_values: c.not_values.to_strings(), key: c.key }
    }
}

/// The attribute a `when` condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ConditionKey {
    /// `request.auth.claims[a][b]...`: the path of nested claim names.
    Claim(Vec<String>),
    /// `request.auth.principal`: `iss/sub`.
    Principal,
    /// `request.auth.audiences`
    Audiences,
    /// `request.auth.presenter`: the `azp` claim.
    Presenter,
    /// `request.headers[name]` (name lower-cased).
    Header(String),
    SourceIp,
    DestinationIp,
    DestinationPort,
}

impl TryFrom<String> for ConditionKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for ConditionKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "request.auth.principal" => return Ok(ConditionKey::Principal),
            "request.auth.audiences" => return Ok(ConditionKey::Audiences),
            "request.auth.presenter" => return Ok(ConditionKey::Presenter),
            "source.ip" | "remote.ip" => return Ok(ConditionKey::SourceIp),
            "destination.ip" => return Ok(ConditionKey::DestinationIp),
            "destination.port" => return Ok(ConditionKey::DestinationPort),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("request.auth.claims") {
            let path = parse_brackets(rest).ok_or_else(|| {
                format!("{s:?}: write claims as request.auth.claims[name] or request.auth.claims[a][b]")
            })?;
            return Ok(ConditionKey::Claim(path));
        }
        if let Some(rest) = s.strip_prefix("request.headers") {
            let path = parse_brackets(rest)
                .filter(|p| p.len() == 1)
                .ok_or_else(|| format!("{s:?}: write headers as request.headers[name]"))?;
            return Ok(ConditionKey::Header(path[0].to_ascii_lowercase()));
        }
        let hint = match s {
            "source.principal" | "source.namespace" | "connection.sni" => {
                " (ward has no mTLS peer identity; use request.auth.* keys)"
            }
            _ => "",
        };
        Err(format!(
            "unknown condition key {s:?}{hint}; expected request.auth.claims[..], request.auth.principal, \
             request.auth.audiences, request.auth.presenter, request.headers[..], source.ip, \
             destination.ip or destination.port"
        ))
    }
}

/// `[a][b]` -> `["a", "b"]`; names must be non-empty and contain no brackets.
fn parse_brackets(mut s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let inner = s.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_owned());
        s = &inner[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

impl fmt::Display for ConditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionKey::Claim(path) => {
                f.write_str("request.auth.claims")?;
                for p in path {
                    write!(f, "[{p}]")?;
                }
                Ok(())
            }
            ConditionKey::Principal => f.write_str("request.auth.principal"),
            ConditionKey::Audiences => f.write_str("request.auth.audiences"),
            ConditionKey::Presenter => f.write_str("request.auth.presenter"),
            ConditionKey::Header(h) => write!(f, "request.headers[{h}]"),
            ConditionKey::SourceIp => f.write_str("source.ip"),
            ConditionKey::DestinationIp => f.write_str("destination.ip"),
            ConditionKey::DestinationPort => f.write_str("destination.port"),
        }
    }
}

impl From<ConditionKey> for String {
    fn from(k: ConditionKey) -> String {
        k.to_string()
    }
}

/// An IP address or CIDR; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(pub IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            if net.trunc() != net {
                return Err(format!("{s:?} has host bits set; did you mean {}?", net.trunc()));
            }
            return Ok(Cidr(net));
        }
        s.parse::<IpAddr>().map(|ip| Cidr(IpNet::from(ip))).map_err(|_| format!("{s:?} is not an IP address or CIDR"))
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.0.to_string()
    }
}
