//! What the gateway tells the outside world about its verdicts: metrics,
//! events (pull, stream), webhooks and the JSON Lines audit log.

pub mod audit_log;
pub mod events;
pub mod metrics;
pub mod webhooks;

pub use events::Events;
pub use metrics::Metrics;

/// rustls needs one process-wide crypto provider; ours is ring. Safe to
/// call any number of times.
pub fn tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only when one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
