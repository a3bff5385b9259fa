//! [`HeadSlot`]: the head of the last request a connection delivered, written on every request
//! without a lock or an allocation, read only when a report names a cut connection.
//!
//! A sequence lock over atomic words: the one writer (the connection's task: hyper calls the
//! service of a connection from the task that drives it) copies the method and the target, as
//! text, into the words between two increments of `seq`; a reader copies them out and keeps
//! the copy only if `seq` was even and unchanged around it. Every word is an atomic, so a read
//! that overlaps a write is retried, never undefined. The text is cut at [`CAPACITY`] bytes.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

use http::{Method, Uri, Version};

const WORDS: usize = 16;
/// The most bytes of `METHOD target` kept.
pub(crate) const CAPACITY: usize = WORDS * 8;

/// The head of a connection's last request.
#[derive(Debug, Default)]
pub(crate) struct HeadSlot {
    /// Odd while a write is in progress; 0 before the first request.
    seq: AtomicU32,
    version: AtomicU8,
    /// Bytes of `text` in use; the method ends at the first space.
    len: AtomicU8,
    text: [AtomicU64; WORDS],
}

impl HeadSlot {
    /// Records `method` and `uri` (its path and query), and the `version`. Called by the one
    /// writer only.
    pub(crate) fn write(&self, version: Version, method: &Method, uri: &Uri) {
        let mut text = [0u8; CAPACITY];
        let mut len = 0;
        for part in [
            method.as_str().as_bytes(),
            b" ",
            uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes(),
        ] {
            let n = part.len().min(CAPACITY - len);
            text[len..len + n].copy_from_slice(&part[..n]);
            len += n;
        }
        let seq = self.seq.load(Ordering::Relaxed);
        // Odd: a reader that sees it, or sees the words change under it, retries.
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd `seq` before the words for a reader that sees any new word (the
        // reader's acquire fence pairs with it).
        fence(Ordering::Release);
        self.version.store(encode(version), Ordering::Relaxed);
        self.len.store(len as u8, Ordering::Relaxed); // CAPACITY < 256
        for (word, bytes) in self
            .text
            .iter()
            .zip(text.chunks_exact(8))
            .take(len.div_ceil(8))
        {
            word.store(
                u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
        // Release: a reader that sees the even `seq` sees the words written before it.
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The last head written, if any and if a consistent copy was had in a few tries.
    pub(crate) fn read(&self) -> Option<(Version, Method, Uri)> {
        for _ in 0..64 {
            // Acquire: pairs with the writer's release store of the even value.
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let version = self.version.load(Ordering::Relaxed);
            let len = usize::from(self.len.load(Ordering::Relaxed)).min(CAPACITY);
            let mut text = [0u8; CAPACITY];
            for (word, bytes) in self.text.iter().zip(text.chunks_exact_mut(8)) {
                bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            // Orders the reads of the words before the second read of `seq`.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(decode(version, &text[..len]));
            }
        }
        None
    }
}

fn encode(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_11 => 2,
        Version::HTTP_2 => 3,
        _ => 4,
    }
}

fn decode(version: u8, text: &[u8]) -> (Version, Method, Uri) {
    let version = match version {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        _ => Version::HTTP_3,
    };
    let (method, target) = match text.iter().position(|&b| b == b' ') {
        Some(space) => (&text[..space], &text[space + 1..]),
        None => (text, &b"/"[..]),
    };
    let method = Method::from_bytes(method).unwrap_or_default();
    // A target cut in the middle may not parse (a cut percent escape is fine, a cut UTF-8
    // sequence is not): fall back to its longest prefix that does.
    let uri = (0..=target.len())
        .rev()
        .find_map(|end| Uri::try_from(&target[..end]).ok().filter(|_| end > 0))
        .unwrap_or_else(|| Uri::from_static("/"));
    (version, method, uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_head_written_is_read_back() {
        let slot = HeadSlot::default();
        assert_eq!(slot.read(), None);
        let uri: Uri = "/bytes?n=64000000".parse().unwrap();
        slot.write(Version::HTTP_11, &Method::GET, &uri);
        let uri2: Uri = "http://example.com/upload".parse().unwrap();
        slot.write(Version::HTTP_2, &Method::POST, &uri2);
        let (version, method, uri) = slot.read().unwrap();
        assert_eq!((version, method), (Version::HTTP_2, Method::POST));
        assert_eq!(uri, "/upload");
    }

    #[test]
    fn a_long_target_is_cut_to_the_capacity() {
        let slot = HeadSlot::default();
        let long = format!("/{}", "a".repeat(300));
        slot.write(Version::HTTP_11, &Method::GET, &long.parse().unwrap());
        let (_, method, uri) = slot.read().unwrap();
        assert_eq!(method, Method::GET);
        assert_eq!(uri.path().len(), CAPACITY - "GET ".len());
        assert!(long.starts_with(uri.path()));
    }

    #[test]
    fn a_reader_racing_the_writer_sees_whole_heads_only() {
        let slot = std::sync::Arc::new(HeadSlot::default());
        let heads: Vec<Uri> = [
            "/a",
            "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb?x=1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        slot.write(Version::HTTP_11, &Method::GET, &heads[0]);
        let writer = {
            let (slot, heads) = (slot.clone(), heads.clone());
            std::thread::spawn(move || {
                for i in 0..200_000 {
                    slot.write(Version::HTTP_11, &Method::GET, &heads[i % 2]);
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() {
            if let Some((_, _, uri)) = slot.read() {
                assert!(heads.contains(&uri), "torn read: {uri}");
                seen += 1;
            }
        }
        writer.join().unwrap();
        assert!(seen > 0);
    }
}
