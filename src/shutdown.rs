//! Cancellation: one type for the whole process, a tree of
//! [`CancellationToken`]s. The binary owns the root and cancels it on SIGINT
//! or SIGTERM; each unit of work takes a child, which the parent's
//! cancellation reaches and which can be cancelled alone (one export when its
//! output lock is lost, the crawl's workers when one of them failed), so a
//! fan-out to many (account, region) pairs stops as a tree. Tasks check
//! their token at safe points: between calls, never half-way through a write.

pub use tokio_util::sync::CancellationToken;

/// A root token that is cancelled when the process receives SIGINT or
/// SIGTERM (what ECS sends before SIGKILL). `on_signal` runs first, to say so.
pub fn cancelled_on_signal(on_signal: impl FnOnce() + Send + 'static) -> CancellationToken {
    let root = CancellationToken::new();
    let token = root.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        on_signal();
        token.cancel();
    });
    root
}
