//! [`Listener`]: where [`serve`](crate::serve()) takes its connections from. The same shape as
//! axum 0.8's `axum::serve::Listener` (an `accept` and a `local_addr`), so a listener written
//! for `axum::serve` ports by changing the trait's path, plus what a drain needs: the
//! connections already queued when it begins ([`Listener::take_queued`]).
//!
//! Implemented for tokio's [`TcpListener`] and [`UnixListener`], for [`Inherited`] sockets
//! (systemd socket activation, a process manager handing the socket to the next generation),
//! and by you for anything else that yields connections (a PROXY protocol acceptor, connections
//! you accept yourself).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
#[cfg(unix)]
use tokio::net::{unix::UCred, UnixListener, UnixStream};
use tokio::net::{TcpListener, TcpStream};

/// A source of connections for [`serve`](crate::serve()).
///
/// # Examples
///
/// Connections accepted by your own code (a PROXY protocol reader, a filter), handed to
/// `serve` through a channel:
///
/// ```
/// use std::io;
/// use std::net::SocketAddr;
/// use tokio::net::TcpStream;
/// use tokio::sync::mpsc;
///
/// struct Accepted(mpsc::Receiver<(TcpStream, SocketAddr)>);
///
/// impl tower_drain::serve::Listener for Accepted {
///     type Io = TcpStream;
///     type Addr = SocketAddr;
///
///     async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
///         // Once the sender is gone nothing more comes: wait for the drain.
///         match self.0.recv().await {
///             Some(accepted) => Ok(accepted),
///             None => std::future::pending().await,
///         }
///     }
///
///     fn local_addr(&self) -> io::Result<SocketAddr> {
///         Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
///     }
/// }
/// ```
pub trait Listener: Send + Sized + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A peer's address, given to a make service such as axum's
    /// `into_make_service_with_connect_info` (see [`serve`](crate::serve())).
    type Addr: Clone + Send + Sync + fmt::Debug + 'static;

    /// The next connection. An error is taken to be passing (out of file descriptors, a
    /// connection reset while queued): `serve` waits a little and accepts again.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;

    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<Self::Addr>;

    /// Called once, when the drain begins: the connections already queued, taken without
    /// waiting, to be served before the listener is dropped. Closing a listening socket makes
    /// the kernel reset the connections still in its queue, which a load balancer sent before it
    /// knew of the shutdown. The default takes none.
    fn take_queued(self) -> Vec<(Self::Io, Self::Addr)> {
        Vec::new()
    }
}

/// At most this many connections are taken from a backlog at the drain: the kernel's default
/// cap on any backlog (`net.core.somaxconn`), so a client that keeps connecting cannot hold the
/// listener open.
const MAX_QUEUED: usize = 4096;

impl Listener for TcpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }

    /// A non-blocking `accept` until the queue is empty: it asks the kernel, not the reactor.
    /// (tokio's `accept` waits for the reactor's next turn to learn that the queue is empty, and
    /// a load balancer that keeps connecting, as nginx does until it is refused, kept the
    /// listener open for as long as it did.) What connects after the last `accept` is refused,
    /// or reset if it made the queue in the microseconds before the close.
    fn take_queued(self) -> Vec<(TcpStream, SocketAddr)> {
        // Still non-blocking: `into_std` keeps the mode tokio set.
        match self.into_std() {
            Ok(listener) => drain_queue(|| {
                let (stream, peer) = listener.accept()?;
                stream.set_nonblocking(true)?;
                Ok((TcpStream::from_std(stream)?, peer))
            }),
            Err(_) => Vec::new(),
        }
    }
}

/// A Unix domain socket peer: its address (usually unnamed) and the credentials of the process
/// that connected (`SO_PEERCRED`).
#[cfg(unix)]
#[derive(Debug, Clone)]
pub struct UnixPeer {
    addr: tokio::net::unix::SocketAddr,
    cred: Option<UCred>,
}

#[cfg(unix)]
impl UnixPeer {
    /// The peer's address: unnamed, unless the client bound its socket to a path.
    pub fn addr(&self) -> &tokio::net::unix::SocketAddr {
        &self.addr
    }

    /// The connecting process's pid, uid and gid, if the platform tells them. `None` for the
    /// listener's own address ([`Listener::local_addr`]).
    pub fn cred(&self) -> Option<UCred> {
        self.cred
    }

    fn of(stream: &UnixStream, addr: tokio::net::unix::SocketAddr) -> Self {
        Self {
            addr,
            cred: stream.peer_cred().ok(),
        }
    }
}

#[cfg(unix)]
impl Listener for UnixListener {
    type Io = UnixStream;
    type Addr = UnixPeer;

    async fn accept(&mut self) -> io::Result<(UnixStream, UnixPeer)> {
        let (stream, addr) = UnixListener::accept(self).await?;
        let peer = UnixPeer::of(&stream, addr);
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<UnixPeer> {
        Ok(UnixPeer {
            addr: UnixListener::local_addr(self)?,
            cred: None,
        })
    }

    fn take_queued(self) -> Vec<(UnixStream, UnixPeer)> {
        let Ok(listener) = self.into_std() else {
            return Vec::new();
        };
        drain_queue(|| {
            let (stream, _) = listener.accept()?;
            stream.set_nonblocking(true)?;
            let stream = UnixStream::from_std(stream)?;
            // The std address cannot be turned into tokio's: ask the stream again.
            let peer = UnixPeer::of(&stream, stream.peer_addr()?);
            Ok((stream, peer))
        })
    }
}

/// Takes connections with `accept` (non-blocking) until the queue is empty, in at most
/// [`MAX_QUEUED`] tries. A connection that fails on its way (reset while queued, not
/// registered) is skipped; an empty queue, or running out of file descriptors, ends it.
fn drain_queue<T, A>(mut accept: impl FnMut() -> io::Result<(T, A)>) -> Vec<(T, A)> {
    let mut taken = Vec::new();
    for _ in 0..MAX_QUEUED {
        match accept() {
            Ok(accepted) => taken.push(accepted),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.raw_os_error().is_some_and(is_out_of_fds) => break,
            // Reset by its client while queued, interrupted: the next one may be fine.
            Err(_) => {}
        }
    }
    taken
}

/// `EMFILE`, `ENFILE` (Linux, the BSDs and macOS agree on 24 and 23).
fn is_out_of_fds(errno: i32) -> bool {
    errno == 23 || errno == 24
}

/// A listening socket this process shares with others: one inherited from systemd socket
/// activation or from a process manager, which hands the same socket to the next generation.
///
/// Accepts like the listener it wraps until the drain, then stops and leaves the connections
/// queued to the other holders of the socket (the next generation), instead of taking them as
/// `serve` does with a socket of its own. Restarts on one host, without a load balancer,
/// then refuse nothing: see `docs/single-host.md`.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use tower_drain::serve::Inherited;
///
/// // LISTEN_FDS=1 and LISTEN_PID=<this pid>: the socket on fd 3. Otherwise, bind one.
/// match Inherited::tcp_from_env()? {
///     Some(listener) => println!("listening on {}", listener.get_ref().local_addr()?),
///     None => println!("no socket passed: bind one with tower_drain::serve::bind"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Inherited<L> {
    inner: L,
}

impl<L> Inherited<L> {
    /// Marks `listener` as shared with other processes.
    pub fn new(listener: L) -> Self {
        Self { inner: listener }
    }

    /// The listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }

    /// The listener, no longer marked as shared.
    pub fn into_inner(self) -> L {
        self.inner
    }
}

impl Inherited<TcpListener> {
    /// The first socket passed by systemd's socket activation convention (`LISTEN_FDS` and
    /// `LISTEN_PID`, the socket on file descriptor 3), if it is a TCP listener. `Ok(None)` when
    /// no socket was passed to this process. The variables are removed from the environment,
    /// as `sd_listen_fds` does, so that child processes do not take the socket for theirs.
    ///
    /// # Errors
    ///
    /// When fd 3 is not a listening TCP socket, or cannot be registered with tokio (call it
    /// within a runtime).
    pub fn tcp_from_env() -> io::Result<Option<Self>> {
        let Some(listener) = listenfd::ListenFd::from_env().take_tcp_listener(0)? else {
            return Ok(None);
        };
        listener.set_nonblocking(true)?;
        Ok(Some(Self::new(TcpListener::from_std(listener)?)))
    }
}

#[cfg(unix)]
impl Inherited<UnixListener> {
    /// As [`tcp_from_env`](Inherited::<TcpListener>::tcp_from_env), for a Unix domain socket.
    ///
    /// # Errors
    ///
    /// When fd 3 is not a listening Unix socket, or cannot be registered with tokio.
    pub fn unix_from_env() -> io::Result<Option<Self>> {
        let Some(listener) = listenfd::ListenFd::from_env().take_unix_listener(0)? else {
            return Ok(None);
        };
        listener.set_nonblocking(true)?;
        Ok(Some(Self::new(UnixListener::from_std(listener)?)))
    }
}

impl<L: Listener> Listener for Inherited<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    fn accept(&mut self) -> impl Future<Output = io::Result<(L::Io, L::Addr)>> + Send {
        // `O_NONBLOCK` belongs to the socket, which every holder shares: a process that starts
        // on it with a blocking socket (systemd clears the flag for each new instance unless
        // `NonBlocking=yes`) would make this process's next `accept` block its runtime thread,
        // and the process would never exit. Set it again before each accept.
        keep_nonblocking(&self.inner);
        self.inner.accept()
    }

    fn local_addr(&self) -> io::Result<L::Addr> {
        self.inner.local_addr()
    }

    // The default: the queue stays with the socket's other holders.
}

/// Sets `O_NONBLOCK` on `listener`'s socket, if it is one of tokio's listeners.
fn keep_nonblocking<L: 'static>(listener: &L) {
    let listener = listener as &dyn std::any::Any;
    if let Some(tcp) = listener.downcast_ref::<TcpListener>() {
        let _ = socket2::SockRef::from(tcp).set_nonblocking(true);
    }
    #[cfg(unix)]
    if let Some(unix) = listener.downcast_ref::<UnixListener>() {
        let _ = socket2::SockRef::from(unix).set_nonblocking(true);
    }
}

/// How long the accept loop waits after an error before accepting again: errors such as
/// running out of file descriptors pass, and spinning would not help them pass.
pub(super) const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn drain_takes_every_queued_tcp_connection_without_waiting_then_refuses_new_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = TcpListener::local_addr(&listener).unwrap();
        // Queued by the kernel while nothing accepts; the reactor has not seen them.
        let clients: Vec<_> = (0..20)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let taken = listener.take_queued();
        assert_eq!(taken.len(), clients.len());
        let mut local: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        let mut peers: Vec<_> = taken.iter().map(|(_, peer)| *peer).collect();
        local.sort();
        peers.sort();
        assert_eq!(peers, local, "each queued client is taken, once");
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread")]
    async fn drain_takes_every_queued_unix_connection_with_its_credentials() {
        let dir = std::env::temp_dir().join(format!("tower-drain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("queued.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let clients: Vec<_> = (0..5)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
            .collect();
        let taken = listener.take_queued();
        assert_eq!(taken.len(), clients.len());
        for (_, peer) in &taken {
            let cred = peer.cred().expect("Linux tells the peer's credentials");
            assert_eq!(cred.pid(), Some(std::process::id() as i32));
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_inherited_socket_made_blocking_by_another_holder_never_blocks_the_runtime() {
        use std::time::Instant;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = TcpListener::local_addr(&listener).unwrap();
        let other = listener.into_std().unwrap(); // the next generation's copy
        let mut inherited =
            Inherited::new(TcpListener::from_std(other.try_clone().unwrap()).unwrap());
        // Waiting: tokio registers its interest.
        let waited = tokio::time::timeout(Duration::from_millis(10), inherited.accept()).await;
        assert!(waited.is_err());
        // A connection the reactor sees, then the other holder takes, with the socket made
        // blocking (systemd starting the next instance clears O_NONBLOCK for every holder).
        let _client = std::net::TcpStream::connect(addr).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        other.set_nonblocking(false).unwrap();
        other.accept().unwrap();
        // A blocking accept would hold this thread until the next connection: the one made
        // here after 2 s, so that a regression fails instead of hanging.
        let rescue = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            std::net::TcpStream::connect(addr)
        });
        let started = Instant::now();
        let accepted = tokio::time::timeout(Duration::from_millis(300), inherited.accept()).await;
        assert!(accepted.is_err(), "nothing to accept: still waiting");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the accept blocked the runtime's thread for {:?}",
            started.elapsed()
        );
        drop(rescue);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_inherited_socket_leaves_its_queue_to_the_next_generation() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = TcpListener::local_addr(&listener).unwrap();
        // The next generation's copy of the socket.
        let successor = listener.into_std().unwrap().try_clone().unwrap();
        let listener =
            Inherited::new(TcpListener::from_std(successor.try_clone().unwrap()).unwrap());
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(listener.take_queued().is_empty());
        successor.set_nonblocking(false).unwrap();
        let (_, peer) = successor.accept().unwrap();
        assert_eq!(
            peer,
            _client.local_addr().unwrap(),
            "still queued for the successor"
        );
    }
}
