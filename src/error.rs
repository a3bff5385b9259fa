//! [`BoxError`]: the boxed error the crate passes through, as tower's own.

/// Any error, boxed: what servers given to
/// [`Shutdown::spawn_server`](crate::Shutdown::spawn_server) and cleanup hooks return (`?`
/// converts into it), and what `serve` accepts from services and bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
