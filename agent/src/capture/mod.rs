//! eBPF transparent capture: loading, attaching, pinning, and original-destination lookup.
