//! sk_msg: same-node fast path between the two ends of a local connection.
//!
//! Correctness never depends on it: a miss sends through TCP. Ordering is the one hazard: the
//! peer reads its sk_msg ingress queue before its TCP receive queue, so a socket that ever sent
//! through TCP must keep doing so, or later bytes could overtake earlier ones. A socket whose
//! peer is missing at its first send (the peer's PASSIVE_ESTABLISHED has not run yet) is
//! therefore pinned to TCP for the rest of its life.

use aya_ebpf::{bindings::sk_msg_md, programs::SkMsgContext};
use ward_common::{v4_mapped, Event, SockTuple, SKMSG_TCP_ONLY};

use crate::{
    maps::{count, SKMSG_STATE, SOCKS},
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
    // SAFETY: msg is the program's context; fields are read one 32-bit word at a time as the
    // verifier requires.
    unsafe {
        let (local_addr, remote_addr) = match (*msg).family {
            AF_INET => (v4_mapped((*msg).local_ip4), v4_mapped((*msg).remote_ip4)),
            AF_INET6 => (
                [
                    core::ptr::read_volatile(&(*msg).local_ip6[0]),
                    core::ptr::read_volatile(&(*msg).local_ip6[1]),
                    core::ptr::read_volatile(&(*msg).local_ip6[2]),
                    core::ptr::read_volatile(&(*msg).local_ip6[3]),
                ],
                [
                    core::ptr::read_volatile(&(*msg).remote_ip6[0]),
                    core::ptr::read_volatile(&(*msg).remote_ip6[1]),
                    core::ptr::read_volatile(&(*msg).remote_ip6[2]),
                    core::ptr::read_volatile(&(*msg).remote_ip6[3]),
                ],
            ),
            _ => return None,
        };
        Some(SockTuple {
            local_addr,
            remote_addr,
            local_port: (*msg).local_port as u16,
            remote_port: remote_port((*msg).remote_port),
        })
    }
}
