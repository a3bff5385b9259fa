//! [`TapIo`]: a [`Listener`] that hands each accepted connection to a closure before `serve`
//! takes it (see [`Serve::tap_io`](super::Serve::tap_io)), as axum's `ListenerExt::tap_io`.

use std::fmt;
use std::io;

use super::listener::Listener;

/// A [`Listener`] whose connections are each given to a closure as they are accepted: made by
/// [`Serve::tap_io`](super::Serve::tap_io).
pub struct TapIo<L, F> {
    listener: L,
    tap: F,
}

impl<L, F> TapIo<L, F> {
    pub(super) fn new(listener: L, tap: F) -> Self {
        Self { listener, tap }
    }

    /// The listener.
    pub fn get_ref(&self) -> &L {
        &self.listener
    }
}

impl<L, F> Listener for TapIo<L, F>
where
    L: Listener,
    F: FnMut(&mut L::Io) + Send + 'static,
{
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> io::Result<(L::Io, L::Addr)> {
        let (mut io, addr) = self.listener.accept().await?;
        (self.tap)(&mut io);
        Ok((io, addr))
    }

    fn local_addr(&self) -> io::Result<L::Addr> {
        self.listener.local_addr()
    }

    fn take_queued(self) -> Vec<(L::Io, L::Addr)> {
        let mut tap = self.tap;
        let mut queued = self.listener.take_queued();
        for (io, _) in &mut queued {
            tap(io);
        }
        queued
    }
}

impl<L: fmt::Debug, F> fmt::Debug for TapIo<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapIo")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}
