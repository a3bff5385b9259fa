//! One generation of the supervised server: started with the kept socket on fd 3 under
//! systemd's `sd_listen_fds` convention, ready once it prints `listening on`, stopped with
//! `SIGTERM`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The first descriptor of the sockets handed over: `SD_LISTEN_FDS_START` in
/// `sd_listen_fds(3)`.
const LISTEN_FDS_START: RawFd = 3;

/// Puts `LISTEN_PID` in the environment as the process's own pid, then becomes the command:
/// `exec` keeps the pid, so the server finds `LISTEN_PID` equal to its own, as systemd sets it.
const SET_LISTEN_PID: &str = r#"LISTEN_PID=$$; export LISTEN_PID; exec "$@""#;

/// A running generation.
pub struct Generation {
    pub number: usize,
    pub pid: u32,
    /// From the start to its `listening on` line.
    pub ready_after: Duration,
    /// What it printed after `listening on`.
    pub address: String,
    child: Child,
}

/// How a generation ended.
pub struct Exit {
    pub status: io::Result<ExitStatus>,
    /// From `SIGTERM` to its exit (for a generation that exited on its own: zero).
    pub after: Duration,
    /// It outlived the stop timeout and was killed with `SIGKILL`.
    pub killed: bool,
}

impl Exit {
    /// `code=N`, `signal=N`, or `error=..`.
    pub fn describe(&self) -> String {
        match &self.status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("code={code}"),
                (None, Some(signal)) => format!("signal={signal}"),
                (None, None) => format!("status={s}"),
            },
            Err(e) => format!("error={e:?}"),
        }
    }

    /// It exited by itself with code 0.
    pub fn clean(&self) -> bool {
        !self.killed && matches!(&self.status, Ok(s) if s.success())
    }
}

impl Generation {
    /// Starts `command` with `socket` on fd 3, `LISTEN_FDS=1`, `LISTEN_FDNAMES=http` and
    /// `LISTEN_PID` (its own pid), and waits until it prints a line starting with
    /// `listening on `. Its output, that line excepted, goes to standard error, each line
    /// prefixed with `gen N | `.
    pub async fn start(
        number: usize,
        command: &[String],
        socket: &TcpListener,
        nonblocking: bool,
        ready_timeout: Duration,
    ) -> Result<Generation, String> {
        let started = Instant::now();
        let fd = socket.as_raw_fd();
        let mut shell = Command::new("/bin/sh");
        shell
            .arg("-c")
            .arg(SET_LISTEN_PID)
            .arg("sh")
            .args(command)
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "http")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between `fork` and `exec`; it calls only `dup2`
        // and `fcntl`, which are async-signal-safe, and allocates nothing.
        unsafe {
            shell.pre_exec(move || on_listen_fd(fd, nonblocking));
        }
        let mut child = shell
            .spawn()
            .map_err(|e| format!("gen {number}: starting {command:?}: {e}"))?;
        let pid = child.id().ok_or(format!("gen {number}: no pid"))?;
        let stdout = child.stdout.take().expect("piped above");
        let stderr = child.stderr.take().expect("piped above");
        tokio::spawn(forward(number, BufReader::new(stderr).lines()));

        let mut lines = BufReader::new(stdout).lines();
        let address = match tokio::time::timeout(ready_timeout, listening(number, &mut lines)).await
        {
            Ok(Some(address)) => address,
            Ok(None) => {
                let status = child.wait().await;
                return Err(format!(
                    "gen {number} (pid {pid}) exited before `listening on`: {status:?}"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "gen {number} (pid {pid}) printed no `listening on` within {ready_timeout:?}"
                ))
            }
        };
        tokio::spawn(forward(number, lines));
        Ok(Generation {
            number,
            pid,
            ready_after: started.elapsed(),
            address,
            child,
        })
    }

    /// Resolves when the generation exits by itself (cancel safe).
    pub async fn exited(&mut self) -> Exit {
        Exit {
            status: self.child.wait().await,
            after: Duration::ZERO,
            killed: false,
        }
    }

    /// Sends `SIGTERM` and waits for the exit; past `timeout`, sends `SIGKILL` (systemd's
    /// `TimeoutStopSec`).
    pub async fn stop(mut self, timeout: Duration) -> (Generation, Exit) {
        let signalled = Instant::now();
        if let Err(e) = self.signal(libc::SIGTERM) {
            eprintln!("supervisor: SIGTERM to gen {} failed: {e}", self.number);
        }
        let (status, killed) = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                let _ = self.child.start_kill();
                (self.child.wait().await, true)
            }
        };
        let after = signalled.elapsed();
        (
            self,
            Exit {
                status,
                after,
                killed,
            },
        )
    }

    fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.pid).map_err(io::Error::other)?;
        // SAFETY: `kill` has no memory-safety preconditions. The pid is this generation's: it
        // is not reaped before `stop` waits for it, so no other process can have taken it.
        if unsafe { libc::kill(pid, signal) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// In the child: the socket on fd 3, open across `exec`, with `O_NONBLOCK` set or cleared as
/// systemd does before each `exec` (`NonBlocking=`; default `no`: cleared). `O_NONBLOCK`
/// belongs to the open socket, shared with every generation still running, so clearing it
/// here clears it under them too, as systemd starting a second instance does. `dup2` clears
/// `FD_CLOEXEC` on the copy; if the socket already is fd 3, the flag is cleared on it instead.
fn on_listen_fd(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: plain descriptor calls on a descriptor this process owns; no memory is passed.
    let result = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let flags = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) == -1 {
            -1
        } else if fd == LISTEN_FDS_START {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, LISTEN_FDS_START)
        }
    };
    if result == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads lines until one starts with `listening on `; returns the rest of it, or `None` at
/// the end of the output. The lines before it are forwarded.
async fn listening(number: usize, lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(address) = line.strip_prefix("listening on ") {
            return Some(address.trim().to_string());
        }
        eprintln!("gen {number} | {line}");
    }
    None
}

/// Copies a generation's output to standard error, each line prefixed with its number.
async fn forward<R: AsyncRead + Unpin>(number: usize, mut lines: Lines<BufReader<R>>) {
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("gen {number} | {line}");
    }
}
