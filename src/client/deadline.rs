//! The call's deadline, from its `grpc-timeout` header: retries happen within it, and carry
//! what is left of it.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The deadline `headers` ask for, counted from `now`; `None` without a valid header.
pub(crate) fn from_headers(headers: &HeaderMap, now: impl FnOnce() -> Instant) -> Option<Instant> {
    let timeout = parse(headers.get(GRPC_TIMEOUT)?.as_bytes())?;
    now().checked_add(timeout)
}

/// Rewrites the header to what is left until `deadline`.
pub(crate) fn rewrite(headers: &mut HeaderMap, deadline: Instant, now: Instant) {
    let left = deadline.saturating_duration_since(now);
    // At most 8 digits (the gRPC spec's limit); milliseconds cover 27 hours.
    let millis = left.as_millis().min(99_999_999);
    if let Ok(value) = HeaderValue::try_from(format!("{millis}m")) {
        headers.insert(GRPC_TIMEOUT, value);
    }
}

/// `TimeoutValue TimeoutUnit`: up to 8 ASCII digits, then `H`, `M`, `S`, `m`, `u` or `n`.
fn parse(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse(b"9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse(b"123456789m"), None);
        assert_eq!(parse(b"m"), None);
        assert_eq!(parse(b"5s"), None);
    }

    #[test]
    fn a_retry_carries_what_is_left() {
        let now = Instant::now();
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        let deadline = from_headers(&headers, || now).unwrap();
        rewrite(&mut headers, deadline, now + Duration::from_millis(400));
        assert_eq!(headers[GRPC_TIMEOUT], "600m");
    }
}
