//! Types shared between ward's kernel programs (`ebpf/`) and the agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding so that the kernel and user space
//! agree on the layout byte for byte; each type has a compile-time size assertion.
#![no_std]

// The capture helper fills in the map key/value types here (see ARCHITECTURE.md).
