//! cgroup/connect4 and cgroup/connect6.
//!
//! Loop avoidance: the agent's own upstream connections go to protected destinations too, so
//! they must never be captured. We exclude the agent's cgroup (its id is in the config map,
//! compared with `bpf_get_current_cgroup_id()`) rather than marking the agent's sockets
//! (SO_MARK): the cgroup check covers every socket the agent process opens (proxy upstreams,
//! JWKS fetches, health checks) without each call site remembering to set a mark, needs no
//! CAP_NET_ADMIN at socket creation, and cannot be forged by a pod, which cannot move itself
//! into the agent's cgroup. On a node the agent's pod lives under kubepods (inside the captured
//! subtree), which is exactly why the check is needed.

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::{bpf_get_current_cgroup_id, bpf_get_socket_cookie},
};
use aya_log_ebpf::error;
use ward_common::{CONFIG_LISTEN4, CONFIG_LISTEN6, CaptureConfig, Event, OrigDst, is_v4_mapped, v4_mapped};

use crate::maps::{ORIG_BY_COOKIE, config, count, is_protected};

const SOCK_STREAM: u32 = 1;

pub enum Verdict {
    Allow,
    Refuse,
}

pub fn try_connect4(ctx: &aya_ebpf::programs::SockAddrContext) -> Verdict {
    let sa = ctx.sock_addr;
    // SAFETY: the context pointer is valid for the program's duration; the verifier checks
    // every field access.
    let (sock_type, ip4, port_be) = unsafe { ((*sa).type_, (*sa).user_ip4, (*sa).user_port) };
    let Some(cfg) = precheck(sock_type) else { return Verdict::Allow };
    let dst = v4_mapped(ip4);
    let port = u16::from_be(port_be as u16);
    if !is_protected(dst, port) {
        count(Event::NotProtected);
        return Verdict::Allow;
    }
    if is_agent(cfg) {
        return Verdict::Allow;
    }
    if cfg.flags & CONFIG_LISTEN4 == 0 {
        count(Event::NoListenerForFamily);
        return Verdict::Refuse;
    }
    if !record(ctx, dst, port) {
        return Verdict::Refuse;
    }
    // SAFETY: as above; user_ip4/user_port are writable in connect4.
    unsafe {
        (*sa).user_ip4 = cfg.listen4_addr;
        (*sa).user_port = u32::from(cfg.listen4_port.to_be());
    }
    count(Event::Redirected);
    Verdict::Allow
}

pub fn try_connect6(ctx: &aya_ebpf::programs::SockAddrContext) -> Verdict {
    let sa = ctx.sock_addr;
    // SAFETY: see try_connect4. user_ip6 is read one 32-bit word at a time: the verifier only
    // accepts 4-byte accesses to it on older kernels.
    let (sock_type, dst, port_be) = unsafe {
        (
            (*sa).type_,
            [
                core::ptr::read_volatile(&(*sa).user_ip6[0]),
                core::ptr::read_volatile(&(*sa).user_ip6[1]),
                core::ptr::read_volatile(&(*sa).user_ip6[2]),
                core::ptr::read_volatile(&(*sa).user_ip6[3]),
            ],
            (*sa).user_port,
        )
    };
    let Some(cfg) = precheck(sock_type) else { return Verdict::Allow };
    let port = u16::from_be(port_be as u16);
    if !is_protected(dst, port) {
        count(Event::NotProtected);
        return Verdict::Allow;
    }
    if is_agent(cfg) {
        return Verdict::Allow;
    }
    // A dual-stack socket connecting to ::ffff:a.b.c.d really makes an IPv4 connection: send
    // it to the IPv4 listener, written v4-mapped.
    let (addr, listen_port, flag) = if is_v4_mapped(&dst) {
        (v4_mapped(cfg.listen4_addr), cfg.listen4_port, CONFIG_LISTEN4)
    } else {
        (cfg.listen6_addr, cfg.listen6_port, CONFIG_LISTEN6)
    };
    if cfg.flags & flag == 0 {
        count(Event::NoListenerForFamily);
        return Verdict::Refuse;
    }
    if !record(ctx, dst, port) {
        return Verdict::Refuse;
    }
    // SAFETY: user_ip6/user_port are writable in connect6; 4-byte stores.
    unsafe {
        core::ptr::write_volatile(&mut (*sa).user_ip6[0], addr[0]);
        core::ptr::write_volatile(&mut (*sa).user_ip6[1], addr[1]);
        core::ptr::write_volatile(&mut (*sa).user_ip6[2], addr[2]);
        core::ptr::write_volatile(&mut (*sa).user_ip6[3], addr[3]);
        (*sa).user_port = u32::from(listen_port.to_be());
    }
    count(Event::Redirected);
    Verdict::Allow
}

/// TCP only, and only once the agent has written the config.
#[inline(always)]
fn precheck(sock_type: u32) -> Option<&'static CaptureConfig> {
    if sock_type != SOCK_STREAM {
        count(Event::NotTcp);
        return None;
    }
    match config() {
        Some(cfg) if cfg.flags & (CONFIG_LISTEN4 | CONFIG_LISTEN6) != 0 => Some(cfg),
        _ => {
            count(Event::Unconfigured);
            None
        }
    }
}

#[inline(always)]
fn is_agent(cfg: &CaptureConfig) -> bool {
    // SAFETY: helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if cgroup == cfg.agent_cgroup_id {
        count(Event::AgentSocket);
        return true;
    }
    false
}

/// Remember the original destination under the socket's cookie (stable for the socket's life;
/// the tuple is not known yet: the source port is chosen after this hook).
#[inline(always)]
fn record(ctx: &aya_ebpf::programs::SockAddrContext, addr: [u32; 4], port: u16) -> bool {
    // SAFETY: bpf_get_socket_cookie accepts a bpf_sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let orig = OrigDst { addr, port, _pad: 0 };
    match ORIG_BY_COOKIE.insert(&cookie, &orig, 0) {
        Ok(()) => true,
        Err(e) => {
            count(Event::RecordFailed);
            error!(ctx, "ward: cannot record original destination (errno {}); refusing connect", e);
            false
        }
    }
}

// Keep the bindings import meaningful for readers: the context is a `bpf_sock_addr`.
const _: fn(*mut bpf_sock_addr) = |_| {};
