//! sock_ops: re-key redirected connections by tuple, and fill the SOCKHASH.
//!
//! Why the tuple entry always exists before the agent can `accept()` the connection: the
//! client's ACTIVE_ESTABLISHED callback runs in `tcp_finish_connect()`, when the client
//! processes the SYN-ACK and *before* it sends the final ACK. The agent's listener only creates
//! the child socket (and only then can `accept()` return it) when that ACK arrives. So the
//! write below happens-before the agent's lookup, on every path. The cookie-keyed record from
//! connect() cannot be used by the agent directly: the accepted socket has a different cookie.
//!
//! SOCKHASH membership (only with `skMsg` on), chosen so that only local pairs get in:
//! - ACTIVE, redirected by us: the client end of a captured connection (its peer is the agent).
//! - ACTIVE, remote is a protected destination: the agent's upstream connection (it is only
//!   attached to the agent's cgroup besides the pods', and pods' connections to protected
//!   destinations are all redirected, so they never get here with such a remote).
//! - PASSIVE, whose peer is already in: the agent's accepted end, or a local backend's end.

use core::ptr::read_volatile;

use aya_ebpf::{
    bindings::{BPF_ANY, bpf_sock_ops},
    helpers::bpf_get_socket_cookie,
    programs::SockOpsContext,
};
use aya_log_ebpf::error;
use ward_common::{CONFIG_SK_MSG, Event, SKMSG_INSERTED, SockTuple, v4_mapped};

use crate::maps::{ORIG_BY_COOKIE, ORIG_BY_TUPLE, SKMSG_STATE, SOCKS, config, count, is_protected};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const ACTIVE_ESTABLISHED: u32 = 4;
const PASSIVE_ESTABLISHED: u32 = 5;

pub fn try_sock_ops(ctx: &SockOpsContext) {
    let op = ctx.op();
    if op != ACTIVE_ESTABLISHED && op != PASSIVE_ESTABLISHED {
        return;
    }
    let Some(tuple) = tuple_of(ctx) else { return };
    let sk_msg = matches!(config(), Some(cfg) if cfg.flags & CONFIG_SK_MSG != 0);

    if op == ACTIVE_ESTABLISHED {
        // SAFETY: bpf_get_socket_cookie accepts a sock_ops context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
        // SAFETY: the value is copied out before the entry is removed.
        if let Some(orig) = unsafe { ORIG_BY_COOKIE.get(&cookie) }.copied() {
            match ORIG_BY_TUPLE.insert(&tuple, &orig, BPF_ANY as u64) {
                Ok(()) => count(Event::TupleRecorded),
                Err(e) => {
                    count(Event::TupleRecordFailed);
                    error!(ctx, "ward: cannot record captured connection (errno {})", e);
                }
            }
            let _ = ORIG_BY_COOKIE.remove(&cookie);
            if sk_msg {
                insert(ctx, tuple);
            }
        } else if sk_msg && is_protected(tuple.remote_addr, tuple.remote_port) {
            insert(ctx, tuple);
        }
    } else if sk_msg {
        // SAFETY: value copied immediately.
        let peer_in = unsafe { SKMSG_STATE.get(&tuple.reversed()) }.copied();
        if peer_in.is_some() {
            insert(ctx, tuple);
        }
    }
}

#[inline(always)]
fn insert(ctx: &SockOpsContext, mut tuple: SockTuple) {
    // SAFETY: ctx.ops points to the live bpf_sock_ops for this callback.
    let ops: &mut bpf_sock_ops = unsafe { &mut *ctx.ops };
    match SOCKS.update(&mut tuple, ops, BPF_ANY as u64) {
        Ok(()) => {
            let _ = SKMSG_STATE.insert(&tuple, &SKMSG_INSERTED, BPF_ANY as u64);
            count(Event::SockInserted);
        }
        Err(e) => {
            count(Event::SockInsertFailed);
            error!(ctx, "ward: cannot add socket to the sk_msg map (errno {})", e);
        }
    }
}

#[inline(always)]
fn tuple_of(ctx: &SockOpsContext) -> Option<SockTuple> {
    let ops = ctx.ops;
    // SAFETY: the program's context. Every field is loaded unconditionally, each with its own
    // volatile load, and only then chosen by family: loads in the two branches of a `match`
    // get merged by LLVM into one load through a computed context pointer, which the verifier
    // rejects ("dereference of modified ctx ptr"). The IPv4 fields of an IPv6 socket and vice
    // versa read as whatever the socket holds, which is harmless.
    unsafe {
        let family = read_volatile(&(*ops).family);
        let local4 = read_volatile(&(*ops).local_ip4);
        let remote4 = read_volatile(&(*ops).remote_ip4);
        let local6 = [
            read_volatile(&(*ops).local_ip6[0]),
            read_volatile(&(*ops).local_ip6[1]),
            read_volatile(&(*ops).local_ip6[2]),
            read_volatile(&(*ops).local_ip6[3]),
        ];
        let remote6 = [
            read_volatile(&(*ops).remote_ip6[0]),
            read_volatile(&(*ops).remote_ip6[1]),
            read_volatile(&(*ops).remote_ip6[2]),
            read_volatile(&(*ops).remote_ip6[3]),
        ];
        let local_port = read_volatile(&(*ops).local_port) as u16;
        let remote_port = remote_port(read_volatile(&(*ops).remote_port));
        let (local_addr, remote_addr) = match family {
            AF_INET => (v4_mapped(local4), v4_mapped(remote4)),
            // Dual-stack sockets carrying IPv4 already report v4-mapped addresses here.
            AF_INET6 => (local6, remote6),
            _ => return None,
        };
        Some(SockTuple { local_addr, remote_addr, local_port, remote_port })
    }
}

/// `remote_port` is "network byte order" in a u32: on little-endian kernels the be16 port sits
/// in the upper half (shifted left by 16). Accept either placement.
#[inline(always)]
pub fn remote_port(raw: u32) -> u16 {
    if raw > 0xffff { u32::from_be(raw) as u16 } else { u16::from_be(raw as u16) }
}
