//! Types shared between ward's kernel programs (`ebpf/`) and the agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding so that the kernel and user space
//! agree on the layout byte for byte; each type has a compile-time size assertion.
//!
//! Conventions used by every type below:
//! - Addresses are 16 bytes, IPv4 stored v4-mapped (`::ffff:a.b.c.d`), as four `u32` in
//!   network byte order exactly as the kernel hands them to BPF programs (`user_ip6`,
//!   `remote_ip6`, ...). One representation means one LPM trie and one lookup path for plain
//!   IPv4 sockets, IPv6 sockets and dual-stack sockets connecting to v4-mapped addresses.
//! - Ports are in host byte order.
#![cfg_attr(not(test), no_std)]

/// Names of the maps in the object file; the agent opens them by these names and they are the
/// file names of the pins under `capture.pinPath`.
pub mod map_names {
    pub const TARGETS: &str = "WARD_TARGETS";
    pub const CONFIG: &str = "WARD_CONFIG";
    pub const ORIG_BY_COOKIE: &str = "WARD_ORIG_BY_COOKIE";
    pub const ORIG_BY_TUPLE: &str = "WARD_ORIG_BY_TUPLE";
    pub const SOCKS: &str = "WARD_SOCKS";
    pub const SK_MSG_STATE: &str = "WARD_SKMSG_STATE";
    pub const COUNTERS: &str = "WARD_COUNTERS";
    pub const ALL: [&str; 7] = [TARGETS, CONFIG, ORIG_BY_COOKIE, ORIG_BY_TUPLE, SOCKS, SK_MSG_STATE, COUNTERS];
}

/// Names of the program functions in the object file.
pub mod program_names {
    pub const CONNECT4: &str = "ward_connect4";
    pub const CONNECT6: &str = "ward_connect6";
    pub const SOCK_OPS: &str = "ward_sock_ops";
    pub const SK_MSG: &str = "ward_sk_msg";
}

/// Map sizes. Entries of the two original-destination maps live from `connect()` until the
/// agent's `accept()` (LRU, so a crashed agent cannot fill them up for good).
pub const MAX_TARGETS: u32 = 4096;
pub const MAX_PENDING: u32 = 65_536;
pub const MAX_SOCKS: u32 = 65_536;

/// The second 32-bit word of a v4-mapped address (`0000:ffff`), in network byte order.
pub const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// v4-mapped form of an IPv4 address given in network byte order (as `user_ip4`).
#[inline(always)]
pub const fn v4_mapped(ip4_be: u32) -> [u32; 4] {
    [0, 0, V4_MAPPED_WORD, ip4_be]
}

/// Whether a 16-byte address is v4-mapped.
#[inline(always)]
pub const fn is_v4_mapped(ip: &[u32; 4]) -> bool {
    ip[0] == 0 && ip[1] == 0 && ip[2] == V4_MAPPED_WORD
}

/// Key data of the protected-target LPM trie (aya's `lpm_trie::Key<[u32; 4]>` adds the
/// `prefix_len`): IPv4 prefixes are stored v4-mapped with `prefix_len + 96`.
pub type TargetAddr = [u32; 4];

/// Ports protected at one prefix. Because an LPM lookup only returns the longest match, the
/// agent stores in every prefix the union of its own ports and those of every shorter prefix
/// that contains it (see `agent/src/capture/targets.rs`).
pub const MAX_PORTS_PER_PREFIX: usize = 32;
/// `TargetPorts::flags`: every port of the prefix is protected.
pub const PORTS_ANY: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPorts {
    pub flags: u32,
    /// How many entries of `ports` are used.
    pub len: u32,
    pub ports: [u16; MAX_PORTS_PER_PREFIX],
}
const _: () = assert!(core::mem::size_of::<TargetPorts>() == 8 + 2 * MAX_PORTS_PER_PREFIX);

impl TargetPorts {
    pub const EMPTY: TargetPorts = TargetPorts { flags: 0, len: 0, ports: [0; MAX_PORTS_PER_PREFIX] };

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        if self.flags & PORTS_ANY != 0 {
            return true;
        }
        // Bounded loop: the verifier sees at most MAX_PORTS_PER_PREFIX iterations.
        let mut i = 0;
        while i < MAX_PORTS_PER_PREFIX {
            if i as u32 >= self.len {
                return false;
            }
            if self.ports[i] == port {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// `CaptureConfig::flags`
pub const CONFIG_LISTEN4: u32 = 1;
pub const CONFIG_LISTEN6: u32 = 1 << 1;
/// Put captured socket pairs into the SOCKHASH so `sk_msg` can splice them.
pub const CONFIG_SK_MSG: u32 = 1 << 2;

/// The single entry of the config array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Sockets opened by processes of this cgroup are never redirected (the agent's own
    /// upstream connections; see `ebpf/src/connect.rs`).
    pub agent_cgroup_id: u64,
    /// The cgroup the programs are attached to; lets a restarted agent notice that its
    /// configured cgroup changed and that adopting the pins would be wrong.
    pub capture_cgroup_id: u64,
    /// IPv6 capture listener (native IPv6 destinations).
    pub listen6_addr: [u32; 4],
    /// IPv4 capture listener, network byte order (IPv4 and v4-mapped destinations).
    pub listen4_addr: u32,
    pub listen4_port: u16,
    pub listen6_port: u16,
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<CaptureConfig>() == 48);

/// Where a captured connection was going.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrigDst {
    /// v4-mapped for IPv4 and for v4-mapped destinations of dual-stack sockets.
    pub addr: [u32; 4],
    pub port: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<OrigDst>() == 20);

/// A TCP connection as seen from one of its sockets. The SOCKHASH key, and the key by which
/// the agent finds the original destination of an accepted connection (the client's view:
/// local = client, remote = capture listener; the agent builds it from its peer and local
/// addresses).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockTuple {
    pub local_addr: [u32; 4],
    pub remote_addr: [u32; 4],
    pub local_port: u16,
    pub remote_port: u16,
}
const _: () = assert!(core::mem::size_of::<SockTuple>() == 36);

impl SockTuple {
    /// The same connection seen from the other end.
    #[inline(always)]
    pub const fn reversed(&self) -> SockTuple {
        SockTuple {
            local_addr: self.remote_addr,
            remote_addr: self.local_addr,
            local_port: self.remote_port,
            remote_port: self.local_port,
        }
    }
}

/// Values of the sk_msg state map (keyed by a socket's own tuple).
/// The socket is in the SOCKHASH (its peer may join it, see `ebpf/src/sock_ops.rs`).
pub const SKMSG_INSERTED: u8 = 1;
/// Some of this socket's payload already went through TCP: never redirect it again, or the
/// peer could read later bytes (sk_msg ingress queue) before earlier ones (TCP receive queue).
pub const SKMSG_TCP_ONLY: u8 = 2;

/// Everything the kernel programs count: one index of the per-CPU counter array each, and the
/// stable label value in `ward_capture_*` metrics and logs. Never renumber or rename one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    // ---- connect4/connect6 verdicts
    /// Destination protected: rewritten to the capture listener.
    Redirected = 0,
    /// Destination not protected: untouched.
    NotProtected = 1,
    /// The agent's own socket: never captured.
    AgentSocket = 2,
    /// Not TCP (UDP connect): untouched.
    NotTcp = 3,
    /// Protected, but no capture listener for this address family: connect refused (fail
    /// closed rather than bypass).
    NoListenerForFamily = 4,
    /// Protected, but the original destination could not be recorded: connect refused.
    RecordFailed = 5,
    /// The config map is empty (agent never configured it): untouched.
    Unconfigured = 6,

    // ---- sock_ops
    /// A redirected connection got established; its tuple now maps to the original destination.
    TupleRecorded = 7,
    /// The tuple entry could not be written (the agent will not find the destination).
    TupleRecordFailed = 8,
    /// A socket joined the SOCKHASH.
    SockInserted = 9,
    SockInsertFailed = 10,

    // ---- sk_msg
    /// Payload handed straight to the peer socket.
    MsgRedirected = 11,
    /// Payload went through the TCP stack (peer not local, or connection pinned to TCP).
    MsgPassed = 12,
}

impl Event {
    pub const COUNT: u32 = 13;
    pub const ALL: [Event; Event::COUNT as usize] = [
        Event::Redirected,
        Event::NotProtected,
        Event::AgentSocket,
        Event::NotTcp,
        Event::NoListenerForFamily,
        Event::RecordFailed,
        Event::Unconfigured,
        Event::TupleRecorded,
        Event::TupleRecordFailed,
        Event::SockInserted,
        Event::SockInsertFailed,
        Event::MsgRedirected,
        Event::MsgPassed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Event::Redirected => "redirected",
            Event::NotProtected => "not_protected",
            Event::AgentSocket => "agent_socket",
            Event::NotTcp => "not_tcp",
            Event::NoListenerForFamily => "no_listener_for_family",
            Event::RecordFailed => "record_failed",
            Event::Unconfigured => "unconfigured",
            Event::TupleRecorded => "tuple_recorded",
            Event::TupleRecordFailed => "tuple_record_failed",
            Event::SockInserted => "sock_inserted",
            Event::SockInsertFailed => "sock_insert_failed",
            Event::MsgRedirected => "redirected",
            Event::MsgPassed => "passed",
        }
    }

    /// Which program counts it (the metric family).
    pub const fn program(self) -> Program {
        match self {
            Event::Redirected
            | Event::NotProtected
            | Event::AgentSocket
            | Event::NotTcp
            | Event::NoListenerForFamily
            | Event::RecordFailed
            | Event::Unconfigured => Program::Connect,
            Event::TupleRecorded | Event::TupleRecordFailed | Event::SockInserted | Event::SockInsertFailed => {
                Program::SockOps
            }
            Event::MsgRedirected | Event::MsgPassed => Program::SkMsg,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Connect,
    SockOps,
    SkMsg,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: a `#[repr(C)]` struct of two u32 and a u16 array: every bit pattern is valid,
    // no implicit padding (size asserted above).
    unsafe impl aya::Pod for super::TargetPorts {}
    // SAFETY: `#[repr(C)]` integers with an explicit `_pad`; size asserted above.
    unsafe impl aya::Pod for super::CaptureConfig {}
    // SAFETY: `#[repr(C)]` integers with an explicit `_pad`; size asserted above.
    unsafe impl aya::Pod for super::OrigDst {}
    // SAFETY: `#[repr(C)]` integers, naturally aligned without padding; size asserted above.
    unsafe impl aya::Pod for super::SockTuple {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_indices_are_dense_and_names_unique_per_program() {
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as u32, i as u32, "{e:?} is not at its index");
            for other in &Event::ALL[..i] {
                assert!(
                    !(other.program() == e.program() && other.as_str() == e.as_str()),
                    "{e:?} and {other:?} share a label within one program"
                );
            }
        }
    }

    #[test]
    fn ports_contains_respects_len_and_any() {
        let mut p = TargetPorts::EMPTY;
        p.ports[0] = 80;
        p.ports[1] = 443;
        p.len = 1;
        assert!(p.contains(80));
        assert!(!p.contains(443), "entries past len must not count");
        p.flags = PORTS_ANY;
        assert!(p.contains(9999));
    }

    #[test]
    fn v4_mapped_layout_matches_ipv6_octets() {
        let mapped = v4_mapped(u32::from_ne_bytes([10, 1, 2, 3]));
        let mut bytes = [0u8; 16];
        for (i, w) in mapped.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(bytes, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]);
        assert!(is_v4_mapped(&mapped));
    }
}
