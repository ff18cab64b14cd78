//! `Range: bytes=…` (RFC 9110 §14) for downloads: one range is served as
//! 206; several, another unit, or a header that does not parse are
//! ignored and the whole file is served, as the RFC allows.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    Whole,
    /// Half-open, inside the file.
    Part(Range<u64>),
    /// A well-formed range that starts past the end: 416.
    Unsatisfiable,
}

/// What `header` asks of a file of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (None, Some(suffix), _) if first.trim().is_empty() => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part(size.saturating_sub(suffix)..size)
            }
        }
        // bytes=A-: from A to the end.
        (Some(start), None, true) => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part(start..size)
            }
        }
        // bytes=A-B, B inclusive and cut to the end.
        (Some(start), Some(end), _) if start <= end => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part(start..end.saturating_add(1).min(size))
            }
        }
        _ => RangeRequest::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn one_range_in_each_form() {
        assert_eq!(parse(Some("bytes=0-3"), 10), Part(0..4));
        assert_eq!(parse(Some("bytes=5-"), 10), Part(5..10));
        assert_eq!(parse(Some("bytes=-3"), 10), Part(7..10));
        assert_eq!(parse(Some("bytes=-30"), 10), Part(0..10));
        assert_eq!(parse(Some("bytes=8-100"), 10), Part(8..10));
    }

    #[test]
    fn past_the_end_is_unsatisfiable() {
        assert_eq!(parse(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=10-12"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn anything_else_is_the_whole_file() {
        for header in [
            None,
            Some("items=0-3"),
            Some("bytes=0-1,4-5"),
            Some("bytes=5-3"),
            Some("bytes=x-3"),
            Some("bytes=-"),
            Some("bytes=99999999999999999999999-"),
        ] {
            assert_eq!(parse(header, 10), Whole, "{header:?}");
        }
    }
}
