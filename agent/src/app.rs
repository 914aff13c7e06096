//! Wiring of the running agent.
