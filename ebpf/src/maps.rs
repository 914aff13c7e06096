//! The maps, all pinned by name under the agent's pin path so that capture outlives the
//! agent process and a restarted agent finds the same state.

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, SockHash, lpm_trie::Key},
};
use ward_common::{
    CaptureConfig, Event, MAX_PENDING, MAX_SOCKS, MAX_TARGETS, OrigDst, SockTuple, TargetAddr, TargetPorts,
};

/// BPF_F_NO_PREALLOC: required for LPM tries.
const NO_PREALLOC: u32 = 1;

#[map(name = "WARD_TARGETS")]
pub static TARGETS: LpmTrie<TargetAddr, TargetPorts> = LpmTrie::pinned(MAX_TARGETS, NO_PREALLOC);

#[map(name = "WARD_CONFIG")]
pub static CONFIG: Array<CaptureConfig> = Array::pinned(1, 0);

#[map(name = "WARD_ORIG_BY_COOKIE")]
pub static ORIG_BY_COOKIE: LruHashMap<u64, OrigDst> = LruHashMap::pinned(MAX_PENDING, 0);

#[map(name = "WARD_ORIG_BY_TUPLE")]
pub static ORIG_BY_TUPLE: LruHashMap<SockTuple, OrigDst> = LruHashMap::pinned(MAX_PENDING, 0);

#[map(name = "WARD_SOCKS")]
pub static SOCKS: SockHash<SockTuple> = SockHash::pinned(MAX_SOCKS, 0);

#[map(name = "WARD_SKMSG_STATE")]
pub static SKMSG_STATE: LruHashMap<SockTuple, u8> = LruHashMap::pinned(MAX_SOCKS, 0);

#[map(name = "WARD_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Event::COUNT, 0);

#[inline(always)]
pub fn count(event: Event) {
    if let Some(slot) = COUNTERS.get_ptr_mut(event as u32) {
        // SAFETY: per-CPU slot of a map value; BPF programs do not migrate CPUs mid-run.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn config() -> Option<&'static CaptureConfig> {
    CONFIG.get(0)
}

/// Whether `addr:port` is a protected destination.
#[inline(always)]
pub fn is_protected(addr: TargetAddr, port: u16) -> bool {
    match TARGETS.get(Key::new(128, addr)) {
        Some(ports) => ports.contains(port),
        None => false,
    }
}
