//! sk_msg: same-node fast path between the two ends of a local connection.
//!
//! Correctness never depends on it: a miss sends through TCP. Ordering is the one hazard: the
//! peer reads its sk_msg ingress queue before its TCP receive queue, so a socket that ever sent
//! through TCP must keep doing so, or later bytes could overtake earlier ones. A socket whose
//! peer is missing at its first send (the peer's PASSIVE_ESTABLISHED has not run yet) is
//! therefore pinned to TCP for the rest of its life.

use core::ptr::read_volatile;

use aya_ebpf::{bindings::sk_msg_md, programs::SkMsgContext};
use ward_common::{Event, SKMSG_TCP_ONLY, SockTuple, v4_mapped};

use crate::{
    maps::{SKMSG_STATE, SOCKS, count},
    sock_ops::remote_port,
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const BPF_F_INGRESS: u64 = 1;
const SK_PASS: i64 = 1;

pub fn try_sk_msg(ctx: &SkMsgContext) {
    let Some(tuple) = tuple_of(ctx.msg) else {
        count(Event::MsgPassed);
        return;
    };
    // SAFETY: value copied immediately.
    if unsafe { SKMSG_STATE.get(&tuple) }.copied() == Some(SKMSG_TCP_ONLY) {
        count(Event::MsgPassed);
        return;
    }
    let mut peer = tuple.reversed();
    if SOCKS.redirect_msg(ctx, &mut peer, BPF_F_INGRESS) == SK_PASS {
        count(Event::MsgRedirected);
    } else {
        let _ = SKMSG_STATE.insert(&tuple, &SKMSG_TCP_ONLY, 0);
        count(Event::MsgPassed);
    }
}

#[inline(always)]
fn tuple_of(msg: *mut sk_msg_md) -> Option<SockTuple> {
    // SAFETY: the program's context. Every field is loaded unconditionally, each with its own
    // volatile load, and only then chosen by family: loads in the two branches of a `match`
    // get merged by LLVM into one load through a computed context pointer, which the verifier
    // rejects ("dereference of modified ctx ptr"). The IPv4 fields of an IPv6 socket and vice
    // versa read as whatever the socket holds, which is harmless.
    unsafe {
        let family = read_volatile(&(*msg).family);
        let local4 = read_volatile(&(*msg).local_ip4);
        let remote4 = read_volatile(&(*msg).remote_ip4);
        let local6 = [
            read_volatile(&(*msg).local_ip6[0]),
            read_volatile(&(*msg).local_ip6[1]),
            read_volatile(&(*msg).local_ip6[2]),
            read_volatile(&(*msg).local_ip6[3]),
        ];
        let remote6 = [
            read_volatile(&(*msg).remote_ip6[0]),
            read_volatile(&(*msg).remote_ip6[1]),
            read_volatile(&(*msg).remote_ip6[2]),
            read_volatile(&(*msg).remote_ip6[3]),
        ];
        let local_port = read_volatile(&(*msg).local_port) as u16;
        let remote_port = remote_port(read_volatile(&(*msg).remote_port));
        let (local_addr, remote_addr) = match family {
            AF_INET => (v4_mapped(local4), v4_mapped(remote4)),
            // Dual-stack sockets carrying IPv4 already report v4-mapped addresses here.
            AF_INET6 => (local6, remote6),
            _ => return None,
        };
        Some(SockTuple { local_addr, remote_addr, local_port, remote_port })
    }
}
