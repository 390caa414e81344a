//! What the gateway tells the outside world about its verdicts: metrics
//! now; events, the stream and webhooks join here.

pub mod metrics;

pub use metrics::Metrics;
