//! Test servers for this crate's tests and benchmarks (feature `testkit`).
//!
//! | server | what it is for |
//! |---|---|
//! | [`NullBulkServer`] | a loopback `_bulk` server that stores nothing and answers every item with success, fast: benchmarks measure the client's own cost against it |
//! | [`FaultProxy`] | an HTTP proxy in front of a real cluster that rejects requests (503, or any status with the body Elasticsearch sends with it), drops connections (before or after forwarding), rejects items (429, really not indexed) and stalls, at seeded random rates or scripted request by request ([`Fault`]) |
//!
//! Both listen on `127.0.0.1`, speak HTTP/1.1 with keep-alive, and stop when dropped.

mod fault_proxy;
mod ndjson;
mod null_server;
mod serve;

pub use fault_proxy::{Fault, FaultCounts, FaultProxy, Faults};
pub use null_server::NullBulkServer;
