//! [`HeadSlot`]: the head of the last request a connection delivered, written on every request
//! without a lock or an allocation, read only when a report names a cut connection.
//!
//! A sequence lock over atomic words: the one writer (the connection's task: hyper calls the
//! service of a connection from the task that drives it) copies the method (one word) and the
//! target, as text, into the words between two increments of `seq`, 8 bytes at a time and only
//! the words the target fills; a reader copies them out and keeps the copy only if `seq` was
//! even and unchanged around it. Every word is an atomic, so a read that overlaps a write is
//! retried, never undefined. The method is cut at 8 bytes (every standard one fits), the
//! target at [`CAPACITY`] bytes.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

use http::{Method, Uri, Version};

/// The target's words: with the method's, the slot's text is 128 bytes.
const WORDS: usize = 15;
/// The longest target kept, in bytes.
pub(crate) const CAPACITY: usize = WORDS * 8;

/// The head of the last request a connection delivered (see the module's docs).
#[derive(Debug, Default)]
pub(crate) struct HeadSlot {
    /// Odd while a write is in progress; 0 before the first.
    seq: AtomicU32,
    version: AtomicU8,
    /// The target's length in bytes, at most [`CAPACITY`].
    len: AtomicU8,
    /// The method's first 8 bytes, zero-padded.
    method: AtomicU64,
    text: [AtomicU64; WORDS],
}

impl HeadSlot {
    /// Records a request's head. Called by the slot's one writer.
    pub(crate) fn write(&self, version: Version, method: &Method, uri: &Uri) {
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes();
        let target = &target[..target.len().min(CAPACITY)];
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.version.store(encode(version), Ordering::Relaxed);
        self.len.store(target.len() as u8, Ordering::Relaxed); // CAPACITY < 256
        self.method
            .store(word(method.as_str().as_bytes()), Ordering::Relaxed);
        for (slot, bytes) in self.text.iter().zip(target.chunks(8)) {
            slot.store(word(bytes), Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The last head written, if any; `None` too if every try overlapped a write.
    pub(crate) fn read(&self) -> Option<(Version, Method, Uri)> {
        for _ in 0..64 {
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
            let method = self.method.load(Ordering::Relaxed).to_le_bytes();
            let mut text = [0u8; CAPACITY];
            for (word, bytes) in self.text.iter().zip(text.chunks_exact_mut(8)) {
                bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                let method_len = method.iter().position(|&b| b == 0).unwrap_or(8);
                return Some(decode(version, &method[..method_len], &text[..len]));
            }
        }
        None
    }
}

/// Up to 8 bytes as a little-endian word, zero-padded: a full chunk is one load, a short one
/// at most three (4, 2 and 1 bytes), cheaper than a call to copy it into a padded array.
fn word(bytes: &[u8]) -> u64 {
    let bytes = &bytes[..bytes.len().min(8)];
    if let Ok(full) = <[u8; 8]>::try_from(bytes) {
        return u64::from_le_bytes(full);
    }
    let (mut word, mut at) = (0u64, 0);
    if let Some(Ok(four)) = bytes.get(..4).map(<[u8; 4]>::try_from) {
        word = u64::from(u32::from_le_bytes(four));
        at = 4;
    }
    if let Some(Ok(two)) = bytes.get(at..at + 2).map(<[u8; 2]>::try_from) {
        word |= u64::from(u16::from_le_bytes(two)) << (8 * at);
        at += 2;
    }
    if let Some(&one) = bytes.get(at) {
        word |= u64::from(one) << (8 * at);
    }
    word
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

fn decode(version: u8, method: &[u8], target: &[u8]) -> (Version, Method, Uri) {
    let version = match version {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        _ => Version::HTTP_3,
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
        assert_eq!(uri.path().len(), CAPACITY);
        assert!(long.starts_with(uri.path()));
    }

    #[test]
    fn every_length_up_to_a_word_is_packed_little_endian_and_zero_padded() {
        let bytes = b"abcdefgh";
        for n in 0..=8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(word(&bytes[..n]), u64::from_le_bytes(padded), "{n} bytes");
        }
    }

    #[test]
    fn an_extension_method_is_cut_at_eight_bytes() {
        let slot = HeadSlot::default();
        let method = Method::from_bytes(b"PROPFINDALL").unwrap();
        slot.write(Version::HTTP_11, &method, &"/x".parse().unwrap());
        let (_, method, uri) = slot.read().unwrap();
        assert_eq!(method.as_str(), "PROPFIND");
        assert_eq!(uri, "/x");
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
                    let method = [Method::GET, Method::OPTIONS][i % 2].clone();
                    slot.write(Version::HTTP_11, &method, &heads[i % 2]);
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() {
            if let Some((_, method, uri)) = slot.read() {
                let i = heads.iter().position(|h| *h == uri);
                assert!(i.is_some(), "torn read: {uri}");
                let expected = [Method::GET, Method::OPTIONS][i.unwrap_or(0)].clone();
                assert_eq!(method, expected, "torn read: {method} {uri}");
                seen += 1;
            }
        }
        writer.join().unwrap();
        assert!(seen > 0);
    }
}
