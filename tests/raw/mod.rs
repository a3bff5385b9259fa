//! A raw HTTP/2 and HTTP/1.1 client over TCP, for the tests that must see what hyper's client
//! hides: the server's `SETTINGS` and `WINDOW_UPDATE`, its `GOAWAY` and error code, streams
//! reset before the server accepts them, a status line answered to headers hyper would not send.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::within;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// `GET /path` on `localhost`, HPACK-encoded without the dynamic table: `:method GET`,
/// `:scheme http` (static table), then `:path` and `:authority` as literals without indexing.
pub fn get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    for (index, value) in [(4u8, path), (1, "localhost")] {
        block.push(index); // literal without indexing, indexed name
        block.push(u8::try_from(value.len()).expect("short"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// One frame: its type, flags, stream and payload.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A `GOAWAY`'s error code.
    pub fn error_code(&self) -> u32 {
        u32::from_be_bytes(self.payload[4..8].try_into().unwrap())
    }

    /// A `WINDOW_UPDATE`'s increment.
    pub fn increment(&self) -> u32 {
        u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & 0x7fff_ffff
    }

    /// A `SETTINGS` frame's values.
    pub fn settings(&self) -> HashMap<u16, u32> {
        self.payload
            .chunks_exact(6)
            .map(|s| {
                let id = u16::from_be_bytes([s[0], s[1]]);
                (id, u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
            })
            .collect()
    }
}

/// A prior-knowledge HTTP/2 connection spoken frame by frame.
pub struct H2 {
    pub stream: TcpStream,
}

impl H2 {
    /// Connects and sends the preface and an empty `SETTINGS`.
    pub async fn connect(addr: SocketAddr) -> H2 {
        let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
        let mut h2 = H2 { stream };
        h2.stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        h2.send(SETTINGS, 0, 0, &[]).await;
        h2
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.stream
            .write_all(&encode(kind, flags, stream, payload))
            .await
            .unwrap();
    }

    /// The next frame; `None` once the server closed the connection. The server's `SETTINGS`
    /// are acknowledged as they come.
    pub async fn next(&mut self) -> Option<Frame> {
        let mut head = [0; 9];
        within("a frame", self.stream.read_exact(&mut head))
            .await
            .ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        within("a frame's payload", self.stream.read_exact(&mut payload))
            .await
            .ok()?;
        let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let frame = Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        };
        if frame.kind == SETTINGS && frame.flags & ACK == 0 {
            self.send(SETTINGS, ACK, 0, &[]).await;
        }
        Some(frame)
    }

    /// Frames until one matches `until` (included); fails the test if the connection closes
    /// first.
    pub async fn until(&mut self, mut until: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await.expect("the connection closed");
            let done = until(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// A `PING` and every frame up to its `ACK`: what the server sent before it read the ping.
    pub async fn ping(&mut self) -> Vec<Frame> {
        self.send(PING, 0, 0, b"settings").await;
        self.until(|f| f.kind == PING && f.flags & ACK != 0).await
    }

    /// `GET path` on `stream`, and every frame up to the end of its response.
    pub async fn get(&mut self, stream: u32, path: &str) -> Vec<Frame> {
        let block = get(path);
        self.send(HEADERS, END_HEADERS | END_STREAM, stream, &block)
            .await;
        self.until(|f| f.stream == stream && f.flags & END_STREAM != 0 && f.kind != RST_STREAM)
            .await
    }
}

pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Sends `request` on a new HTTP/1.1 connection and returns the response's status code.
pub async fn http1_status(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0; 12];
    within("a status line", stream.read_exact(&mut head))
        .await
        .unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}
