//! ward's kernel programs. Entry points stay thin: each calls a `try_*` function and turns its
//! result into the return code the kernel expects; the logic lives in the modules.
//!
//! - `connect4`/`connect6` (cgroup/connect*): rewrite connections to protected destinations to
//!   the capture listener and remember where they were going (keyed by socket cookie).
//! - `sock_ops`: when a redirected connection is established, re-key that record by the
//!   connection's tuple so the agent can find it from its accepted socket; put local socket
//!   pairs into the SOCKHASH for `sk_msg`.
//! - `sk_msg`: hand payload straight to the peer socket of a local pair.
//!
//! Only the `bpf` target has programs; on the host (`cargo build --workspace`, clippy) the crate
//! is an empty binary that says so.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("ward-ebpf holds kernel programs: agent/build.rs builds it for bpfel-unknown-none");
    std::process::exit(2);
}

#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod sk_msg;
#[cfg(target_arch = "bpf")]
mod sock_ops;
#[cfg(target_arch = "bpf")]
pub use programs::*;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        macros::{cgroup_sock_addr, sk_msg, sock_ops},
        programs::{SkMsgContext, SockAddrContext, SockOpsContext},
    };

    /// cgroup/connect*: let the `connect()` proceed (possibly with a rewritten address).
    const CONNECT_ALLOW: i32 = 1;
    /// cgroup/connect*: fail the `connect()` with EPERM.
    const CONNECT_REFUSE: i32 = 0;
    /// sock_ops: the return value is only read for a few ops we do not handle.
    const SOCK_OPS_DONE: u32 = 1;
    /// sk_msg: deliver (through TCP, or to the socket chosen by `bpf_msg_redirect_hash`).
    const SK_PASS: u32 = 1;

    #[cgroup_sock_addr(connect4)]
    pub fn ward_connect4(ctx: SockAddrContext) -> i32 {
        match connect::try_connect4(&ctx) {
            connect::Verdict::Allow => CONNECT_ALLOW,
            connect::Verdict::Refuse => CONNECT_REFUSE,
        }
    }

    #[cgroup_sock_addr(connect6)]
    pub fn ward_connect6(ctx: SockAddrContext) -> i32 {
        match connect::try_connect6(&ctx) {
            connect::Verdict::Allow => CONNECT_ALLOW,
            connect::Verdict::Refuse => CONNECT_REFUSE,
        }
    }

    #[sock_ops]
    pub fn ward_sock_ops(ctx: SockOpsContext) -> u32 {
        sock_ops::try_sock_ops(&ctx);
        SOCK_OPS_DONE
    }

    #[sk_msg]
    pub fn ward_sk_msg(ctx: SkMsgContext) -> u32 {
        sk_msg::try_sk_msg(&ctx);
        // Always SK_PASS: if `bpf_msg_redirect_hash` found the peer it has set the redirect and
        // SK_PASS delivers there; if not, SK_PASS sends through TCP. Returning the helper's
        // SK_DROP on a miss would lose data, which the fast path must never do.
        SK_PASS
    }

    use crate::{connect, sk_msg, sock_ops};

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}
