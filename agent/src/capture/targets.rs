//! From the policies' `target`s to the contents of the kernel's protected-target LPM trie.
//!
//! The kernel does one longest-prefix lookup per `connect()`, so each prefix must carry every
//! port protected at it, including the ports of every shorter prefix that contains it:
//! with `10.0.0.0/8 port 80` and `10.1.2.3/32 port 443`, a connection to 10.1.2.3:80 finds only
//! the /32 entry, which therefore holds {80, 443}.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use ward_common::{MAX_PORTS_PER_PREFIX, MAX_TARGETS, PORTS_ANY, TargetPorts};

use super::{addr, error::CaptureError};
use crate::policy::model::Target;

/// A prefix in the kernel's form: 16-byte v4-mapped words and a prefix length out of 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub words: [u32; 4],
    pub len: u32,
}

impl Prefix {
    fn from_net(net: IpNet) -> Prefix {
        let (ip, len) = match net {
            IpNet::V4(n) => (std::net::IpAddr::V4(n.network()), u32::from(n.prefix_len()) + 96),
            IpNet::V6(n) => (std::net::IpAddr::V6(n.network()), u32::from(n.prefix_len())),
        };
        Prefix { words: addr::words(ip), len }
    }

    /// Whether `self` contains `other` (is equal or shorter and matches on its bits).
    fn contains(&self, other: &Prefix) -> bool {
        self.len <= other.len && mask(other.words, self.len) == self.words
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match addr::ip(self.words) {
            std::net::IpAddr::V4(v4) if self.len >= 96 => write!(f, "{v4}/{}", self.len - 96),
            ip => write!(f, "{ip}/{}", self.len),
        }
    }
}

/// Keep the first `len` bits of a network-order address.
fn mask(words: [u32; 4], len: u32) -> [u32; 4] {
    let mut bytes = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let n = u128::from_be_bytes(bytes);
    let masked = if len == 0 { 0 } else { n & (u128::MAX << (128 - len)) };
    let out = masked.to_be_bytes();
    let mut w = [0u32; 4];
    for (i, chunk) in out.chunks_exact(4).enumerate() {
        w[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    w
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Any,
    Some(BTreeSet<u16>),
}

impl Ports {
    fn merge(&mut self, other: &Ports) {
        match (&mut *self, other) {
            (Ports::Any, _) => {}
            (_, Ports::Any) => *self = Ports::Any,
            (Ports::Some(a), Ports::Some(b)) => a.extend(b),
        }
    }
}

/// What goes into the trie, plus what could not be expressed there.
#[derive(Debug, Default)]
pub struct Plan {
    pub entries: BTreeMap<Prefix, TargetPorts>,
    /// Targets that name only hosts: the kernel sees addresses, not Host headers, so these
    /// cannot be captured transparently (explicit listeners still enforce them).
    pub without_addresses: usize,
}

pub fn plan(targets: &[Target]) -> Result<Plan, CaptureError> {
    let mut own: BTreeMap<Prefix, Ports> = BTreeMap::new();
    let mut without_addresses = 0;
    for t in targets {
        if t.addresses.is_empty() {
            without_addresses += 1;
            continue;
        }
        let ports = if t.ports.is_empty() { Ports::Any } else { Ports::Some(t.ports.iter().copied().collect()) };
        for cidr in &t.addresses {
            own.entry(Prefix::from_net(cidr.0)).and_modify(|p| p.merge(&ports)).or_insert_with(|| ports.clone());
        }
    }
    if own.len() > MAX_TARGETS as usize {
        return Err(CaptureError::TooManyTargets { count: own.len(), max: MAX_TARGETS as usize });
    }
    let mut entries = BTreeMap::new();
    for prefix in own.keys() {
        let mut merged = Ports::Some(BTreeSet::new());
        for (other, ports) in &own {
            if other.contains(prefix) {
                merged.merge(ports);
            }
        }
        let value = match merged {
            Ports::Any => TargetPorts { flags: PORTS_ANY, ..TargetPorts::EMPTY },
            Ports::Some(set) => {
                if set.len() > MAX_PORTS_PER_PREFIX {
                    return Err(CaptureError::TooManyPorts {
                        prefix: prefix.to_string(),
                        count: set.len(),
                        max: MAX_PORTS_PER_PREFIX,
                    });
                }
                let mut v = TargetPorts::EMPTY;
                for (i, p) in set.iter().enumerate() {
                    v.ports[i] = *p;
                }
                v.len = set.len() as u32;
                v
            }
        };
        entries.insert(*prefix, value);
    }
    Ok(Plan { entries, without_addresses })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{model::Cidr, pattern::Pattern};

    fn target(addrs: &[&str], ports: &[u16]) -> Target {
        Target {
            addresses: addrs.iter().map(|a| a.parse::<Cidr>().unwrap()).collect(),
            ports: ports.to_vec(),
            hosts: vec![],
        }
    }

    fn lookup(plan: &Plan, ip: &str, port: u16) -> bool {
        // Longest prefix match, as the kernel does it.
        let w = addr::words(ip.parse().unwrap());
        plan.entries
            .iter()
            .filter(|(p, _)| p.contains(&Prefix { words: w, len: 128 }))
            .max_by_key(|(p, _)| p.len)
            .is_some_and(|(_, v)| v.contains(port))
    }

    #[test]
    fn inner_prefix_inherits_outer_ports() {
        let plan = plan(&[target(&["10.0.0.0/8"], &[80]), target(&["10.1.2.3"], &[443])]).unwrap();
        assert!(lookup(&plan, "10.1.2.3", 80), "outer port lost at the inner prefix");
        assert!(lookup(&plan, "10.1.2.3", 443));
        assert!(lookup(&plan, "10.9.9.9", 80));
        assert!(!lookup(&plan, "10.9.9.9", 443), "inner port leaked to the outer prefix");
        assert!(!lookup(&plan, "11.0.0.1", 80));
    }

    #[test]
    fn empty_ports_mean_any_and_propagate_inward() {
        let plan = plan(&[target(&["fd00::/64"], &[]), target(&["fd00::5"], &[8080])]).unwrap();
        assert!(lookup(&plan, "fd00::5", 22));
        assert!(lookup(&plan, "fd00::7", 1));
        assert!(!lookup(&plan, "fd01::5", 8080));
    }

    #[test]
    fn v4_targets_match_v4_mapped_addresses() {
        let plan = plan(&[target(&["192.0.2.0/24"], &[8080])]).unwrap();
        assert!(lookup(&plan, "::ffff:192.0.2.7", 8080));
        let (p, _) = plan.entries.iter().next().unwrap();
        assert_eq!(p.len, 96 + 24);
        assert_eq!(p.to_string(), "192.0.2.0/24");
    }

    #[test]
    fn hosts_only_targets_are_counted_not_captured() {
        let t = Target { hosts: vec![Pattern::Exact("api.example".into())], ..Default::default() };
        let plan = plan(&[t]).unwrap();
        assert!(plan.entries.is_empty());
        assert_eq!(plan.without_addresses, 1);
    }

    #[test]
    fn too_many_ports_is_an_error_naming_the_prefix() {
        let ports: Vec<u16> = (1..=(MAX_PORTS_PER_PREFIX as u16 + 1)).collect();
        let err = plan(&[target(&["10.0.0.1"], &ports)]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.1/32"), "{err}");
    }
}
