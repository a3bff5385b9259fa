//! [`bind`]: a TCP listener with a production listen backlog.

use std::io;
use std::net::SocketAddr;

use tokio::net::{lookup_host, TcpListener, TcpSocket, ToSocketAddrs};

/// The listen backlog [`bind`] asks for. Why this number: see [`bind`].
const BACKLOG: u32 = 1024;

/// Binds a TCP listener to `addr` like [`TcpListener::bind`], but with a listen backlog of
/// 1024 instead of 128: see [the listen backlog](mod@crate::serve#the-listen-backlog) for why it matters
/// when another instance restarts.
///
/// As [`TcpListener::bind`] does, it resolves `addr` (a [`SocketAddr`], `"host:port"`, an
/// `(ip, port)` pair...; port 0 picks a free port), tries each address in turn (IPv4 or IPv6)
/// and returns the first listener, or the last address's error; on Unix it sets
/// `SO_REUSEADDR`, so a restarted server listens on its port again at once while the old
/// connections are in `TIME_WAIT` (not on Windows, where the option lets another socket take
/// the port).
///
/// # The backlog: 1024
///
/// The backlog is how many connections that have completed their handshake the kernel queues
/// until the server accepts them; past it, it drops the client's `SYN` and the client retries
/// a second later. tokio's [`TcpListener::bind`] listens with 128, std's value (with mio 1.1
/// and later; 1024 before). Production
/// servers listen with more: nginx with 511, Envoy and Go with the system maximum. 1024 holds
/// a burst of several hundred new connections (a balancer moving a restarting peer's
/// keep-alive pool here at once), and is what tower-drain's rolling-restart proofs run with.
/// It costs nothing while the queue is empty.
///
/// The kernel caps every backlog at `net.core.somaxconn` (Linux: 4096 since 5.4, 128 before;
/// macOS: `kern.ipc.somaxconn`, 128): raise it where it is lower. For another backlog, bind a
/// [`TcpSocket`] and give [`listen`](TcpSocket::listen) the number.
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_drain::DrainLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let drain = DrainLayer::default();
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(drain.clone());
///
/// let listener = tower_drain::serve::bind("127.0.0.1:0").await?;
/// println!("listening on {}", listener.local_addr()?);
/// let server = tower_drain::serve(listener, &drain, app);
/// # drop(server);
/// # Ok(())
/// # }
/// ```
pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
    let mut last_err = None;
    for addr in lookup_host(addr).await? {
        match listen(addr, BACKLOG) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

/// Binds one address and listens with `backlog`, with the options `TcpListener::bind` sets.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;

    use super::{bind, BACKLOG};

    /// How long a handshake on loopback may take before the test calls it dropped. A `SYN`
    /// the kernel drops is sent again only after a second, into a queue still full.
    const HANDSHAKE: Duration = Duration::from_millis(500);

    /// `net.core.somaxconn`, the kernel's cap on any backlog.
    fn somaxconn() -> Option<u32> {
        let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?;
        text.trim().parse().ok()
    }

    /// This process's soft limit on open files.
    fn open_files_limit() -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }

    /// Whether a client's handshake with `addr` completes within `within`; its stream, if so.
    async fn handshake(addr: std::net::SocketAddr, within: Duration) -> Option<TcpStream> {
        match tokio::time::timeout(within, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => panic!("connect: {e}"),
            Err(_) => None,
        }
    }

    /// Clients connect and nothing accepts them: the listener's queue holds as many completed
    /// handshakes as its backlog (Linux: one more), and drops the `SYN`s past it.
    #[tokio::test]
    async fn listens_with_the_backlog_it_asks_for() {
        let somaxconn = somaxconn().expect("read /proc/sys/net/core/somaxconn");
        if somaxconn < BACKLOG {
            eprintln!(
                "skipped: net.core.somaxconn is {somaxconn}, below the backlog of {BACKLOG}: \
                 the kernel caps the backlog there"
            );
            return;
        }
        // The clients' sockets, plus room for the rest of the test binary.
        let needed = u64::from(BACKLOG) + 2 + 64;
        match open_files_limit() {
            Some(limit) if limit >= needed => {}
            limit => {
                eprintln!("skipped: {needed} open files needed, the limit is {limit:?}");
                return;
            }
        }
        let listener = bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");

        let mut clients = Vec::new();
        for i in 0..BACKLOG {
            // Generous: a full queue drops the handshake for good, a slow machine only delays it.
            let client = handshake(addr, Duration::from_secs(5)).await;
            let client = client.unwrap_or_else(|| {
                panic!(
                    "client {} dropped: the queue held {i}, a backlog below {BACKLOG}",
                    i + 1
                )
            });
            clients.push(client);
        }
        // Linux queues one more than the backlog; the next `SYN` is dropped.
        let mut past = 0;
        while let Some(client) = handshake(addr, HANDSHAKE).await {
            clients.push(client);
            past += 1;
            assert!(
                past <= 1,
                "{} handshakes completed: backlog above {BACKLOG}",
                clients.len()
            );
        }
        drop(listener);
    }

    #[tokio::test]
    async fn binds_ipv6_and_host_names() {
        match bind("[::1]:0").await {
            Ok(listener) => assert!(listener.local_addr().expect("local_addr").is_ipv6()),
            // No IPv6 on this host (a container without it, say).
            Err(e) => eprintln!("IPv6 not checked: cannot bind [::1]: {e}"),
        }
        let listener = bind("localhost:0").await.expect("bind localhost");
        assert!(listener
            .local_addr()
            .expect("local_addr")
            .ip()
            .is_loopback());
    }

    #[tokio::test]
    async fn a_port_in_use_is_the_error() {
        let taken = bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("local_addr");
        let err = bind(addr).await.expect_err("the port is in use");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
