//! The `grpc-timeout` header: how gRPC sends a caller's deadline to the server, as the time
//! remaining rather than a wall-clock instant, so that clock skew between machines cannot make a
//! deadline early.
//!
//! The wire format ([gRPC over HTTP/2]) is 1 to 8 ASCII digits followed by one unit letter:
//! `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n`
//! (nanoseconds). `200m` is 200 ms; `0n` is no time at all. [`parse`] reads it strictly (anything
//! else is a [`ParseError`], never a guess) and [`format()`] writes it, rounding up so that a
//! deadline never arrives earlier than it was sent.
//!
//! [gRPC over HTTP/2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use http::header::{GetAll, HeaderName};

/// The header's name, `grpc-timeout`.
///
/// ```
/// assert_eq!(ctx::http::grpc_timeout::HEADER.as_str(), "grpc-timeout");
/// ```
pub const HEADER: HeaderName = HeaderName::from_static("grpc-timeout");

/// The most digits a value may have.
const MAX_DIGITS: usize = 8;

/// The largest value that fits in [`MAX_DIGITS`] digits.
const MAX_VALUE: u64 = 99_999_999;

/// The units, finest first, with their length in nanoseconds.
const UNITS: [(u8, u64); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3600 * 1_000_000_000),
];

/// Reads a `grpc-timeout` value: 1 to 8 digits and a unit, nothing else (no sign, no spaces).
///
/// Errors, with the value quoted in the message: an empty value, a value without a unit, a
/// unit other than `H M S m u n`, a non-digit, more than 8 digits. Zero is valid (the caller
/// has no time left). The longest value, `99999999H`, is about 11,400 years, so no valid value
/// overflows a `Duration`.
///
/// ```
/// use std::time::Duration;
/// use ctx::http::grpc_timeout::parse;
/// use http::HeaderValue;
///
/// assert_eq!(parse(&HeaderValue::from_static("200m")).unwrap(), Duration::from_millis(200));
/// assert_eq!(parse(&HeaderValue::from_static("3S")).unwrap(), Duration::from_secs(3));
/// let err = parse(&HeaderValue::from_static("200")).unwrap_err();
/// assert_eq!(err.to_string(), r#"malformed grpc-timeout header "200": no unit"#);
/// ```
pub fn parse(value: &HeaderValue) -> Result<Duration, ParseError> {
    let error = |reason| ParseError { value: format!("{value:?}"), reason };
    let bytes = value.as_bytes();
    let Some((&unit, digits)) = bytes.split_last() else {
        return Err(error(Reason::Empty));
    };
    if unit.is_ascii_digit() {
        return Err(error(Reason::NoUnit));
    }
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(letter, _)| *letter == unit) else {
        return Err(error(Reason::UnknownUnit));
    };
    if digits.is_empty() {
        return Err(error(Reason::NoDigits));
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(error(Reason::NotADigit));
    }
    if digits.len() > MAX_DIGITS {
        return Err(error(Reason::TooManyDigits));
    }
    let count = digits.iter().fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    // At most 99,999,999 hours: 3.6e20 ns, which needs the u128 but fits a Duration.
    let nanos = u128::from(count) * u128::from(unit_nanos);
    let secs = (nanos / 1_000_000_000) as u64;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// The `grpc-timeout` of a request's headers: `None` if it has none, else the one value
/// [`parse`]d. Sent more than once, it is an error naming every value: the values could
/// disagree, and picking one would be a guess.
pub(crate) fn parse_all(values: GetAll<'_, HeaderValue>) -> Option<Result<Duration, ParseError>> {
    let mut iter = values.iter();
    let first = iter.next()?;
    if iter.next().is_none() {
        return Some(parse(first));
    }
    let quoted: Vec<String> = values.iter().map(|value| format!("{value:?}")).collect();
    Some(Err(ParseError { value: quoted.join(", "), reason: Reason::Repeated(quoted.len()) }))
}

/// Writes `timeout` as a `grpc-timeout` value, in the finest unit in which it fits in 8
/// digits, rounded up to that unit (never shorter than `timeout`). A timeout longer than
/// `99999999H` (about 11,400 years) is written as `99999999H`.
///
/// The result is always a valid value: [`parse`] reads it back.
///
/// ```
/// use std::time::Duration;
/// use ctx::http::grpc_timeout::format;
///
/// assert_eq!(format(Duration::from_millis(300)), "300000u");
/// assert_eq!(format(Duration::from_nanos(1_500)), "1500n");
/// assert_eq!(format(Duration::from_nanos(123_456_789)), "123457u"); // 9 digits of ns: rounded up
/// assert_eq!(format(Duration::ZERO), "0n");
/// ```
pub fn format(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let (count, unit) = UNITS
        .iter()
        .find_map(|&(letter, unit_nanos)| {
            let count = nanos.div_ceil(u128::from(unit_nanos));
            (count <= u128::from(MAX_VALUE)).then_some((count as u64, letter))
        })
        .unwrap_or((MAX_VALUE, b'H'));
    // Digits and the unit, written right to left into a buffer that fits the longest value.
    let mut text = [0u8; MAX_DIGITS + 1];
    let mut start = MAX_DIGITS;
    text[MAX_DIGITS] = unit;
    let mut rest = count;
    loop {
        start -= 1;
        text[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&text[start..])
        .expect("digits and a unit letter are a valid header value")
}

/// A `grpc-timeout` value that does not follow the wire format; see [`parse`].
///
/// Its `Display` names the header, quotes the value and says what is wrong:
/// `malformed grpc-timeout header "1x": unknown unit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The value as `HeaderValue`'s `Debug` quotes it (bytes that are not visible ASCII escaped);
    /// every value, comma-separated, for a header sent more than once.
    value: String,
    reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The header came this many times (more than once).
    Repeated(usize),
    Empty,
    NoUnit,
    UnknownUnit,
    NoDigits,
    NotADigit,
    TooManyDigits,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.reason {
            Reason::Repeated(times) => {
                return write!(
                    f,
                    "malformed {HEADER} header {}: sent {times} times, where a request has one",
                    self.value
                );
            }
            Reason::Empty => "empty",
            Reason::NoUnit => "no unit",
            Reason::UnknownUnit => "unknown unit",
            Reason::NoDigits => "no digits",
            Reason::NotADigit => "not a number",
            Reason::TooManyDigits => "more than 8 digits",
        };
        write!(f, "malformed {HEADER} header {}: {reason}", self.value)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Duration, String> {
        parse(&HeaderValue::from_str(text).unwrap()).map_err(|err| err.to_string())
    }

    #[test]
    fn every_unit() {
        assert_eq!(parsed("7H"), Ok(Duration::from_secs(7 * 3600)));
        assert_eq!(parsed("7M"), Ok(Duration::from_secs(7 * 60)));
        assert_eq!(parsed("7S"), Ok(Duration::from_secs(7)));
        assert_eq!(parsed("7m"), Ok(Duration::from_millis(7)));
        assert_eq!(parsed("7u"), Ok(Duration::from_micros(7)));
        assert_eq!(parsed("7n"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn edges_of_the_wire_format() {
        assert_eq!(parsed("0n"), Ok(Duration::ZERO), "zero: no time left");
        assert_eq!(parsed("00000001S"), Ok(Duration::from_secs(1)), "8 digits, leading zeros");
        assert_eq!(parsed("99999999H"), Ok(Duration::from_secs(99_999_999 * 3600)), "the largest");
        let quoted = |text: &str, reason: &str| {
            Err(format!("malformed grpc-timeout header \"{text}\": {reason}"))
        };
        assert_eq!(parsed("123456789m"), quoted("123456789m", "more than 8 digits"));
        assert_eq!(parsed("200"), quoted("200", "no unit"));
        assert_eq!(parsed("200x"), quoted("200x", "unknown unit"));
        assert_eq!(parsed("200s"), quoted("200s", "unknown unit"), "units are case-sensitive");
        assert_eq!(parsed("m"), quoted("m", "no digits"));
        assert_eq!(parsed(""), quoted("", "empty"));
        assert_eq!(parsed("-1S"), quoted("-1S", "not a number"));
        assert_eq!(parsed("+1S"), quoted("+1S", "not a number"));
        assert_eq!(parsed(" 1S"), quoted(" 1S", "not a number"));
        assert_eq!(parsed("1.5S"), quoted("1.5S", "not a number"));
    }

    #[test]
    fn a_header_sent_twice_is_an_error_naming_both_values() {
        let mut headers = http::HeaderMap::new();
        assert!(parse_all(headers.get_all(HEADER)).is_none());
        headers.append(HEADER, HeaderValue::from_static("1S"));
        assert_eq!(parse_all(headers.get_all(HEADER)).unwrap().unwrap(), Duration::from_secs(1));
        headers.append(HEADER, HeaderValue::from_static("2S"));
        let error = parse_all(headers.get_all(HEADER)).unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"malformed grpc-timeout header "1S", "2S": sent 2 times, where a request has one"#
        );
    }

    #[test]
    fn bytes_beyond_ascii_are_quoted_escaped() {
        let value = HeaderValue::from_bytes(b"1\xffS").unwrap();
        let message = parse(&value).unwrap_err().to_string();
        assert_eq!(message, r#"malformed grpc-timeout header "1\xffS": not a number"#);
    }

    #[test]
    fn format_picks_the_finest_unit_that_fits_and_rounds_up() {
        let formatted = |d: Duration| format(d).to_str().unwrap().to_owned();
        assert_eq!(formatted(Duration::ZERO), "0n");
        assert_eq!(formatted(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(formatted(Duration::from_nanos(100_000_000)), "100000u");
        assert_eq!(formatted(Duration::from_nanos(100_000_001)), "100001u", "rounded up");
        assert_eq!(formatted(Duration::from_secs(99_999_999)), "99999999S");
        assert_eq!(formatted(Duration::from_secs(100_000_000)), "1666667M");
        assert_eq!(formatted(Duration::from_secs(99_999_999 * 3600)), "99999999H");
        assert_eq!(formatted(Duration::MAX), "99999999H", "capped, not overflowed");
    }

    #[test]
    fn format_and_parse_round_trip_never_shorter() {
        let mut nanos: u64 = 1;
        while nanos < u64::MAX / 3 {
            let timeout = Duration::from_nanos(nanos);
            let back = parse(&format(timeout)).unwrap();
            assert!(back >= timeout, "{timeout:?} came back as {back:?}");
            // A coarser unit is used only when the finer one needs more than 8 digits, so the
            // count is at least 100,000 (units are at most 1000 times apart): rounding up to
            // it adds less than a hundred-thousandth of the value.
            assert!(back - timeout <= timeout / 100_000, "{timeout:?} came back as {back:?}");
            nanos = nanos * 3 + 1;
        }
    }
}
