//! String formats known to the upstream default format registry.
//!
//! Names are normalized by dropping `-` (so `date-time` == `datetime`);
//! unknown formats are ignored, as upstream strips them from CRD schemas.

use base64::Engine as _;
use regex::Regex;
use std::net::Ipv6Addr;
use std::sync::OnceLock;

fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// Whether `format` is validated for string values.
pub fn is_known(format: &str) -> bool {
    matches!(
        normalize(format).as_str(),
        "bsonobjectid"
            | "uri"
            | "email"
            | "hostname"
            | "ipv4"
            | "ipv6"
            | "cidr"
            | "mac"
            | "uuid"
            | "uuid3"
            | "uuid4"
            | "uuid5"
            | "hexcolor"
            | "byte"
            | "password"
            | "date"
            | "duration"
            | "datetime"
            | "k8sshortname"
            | "k8slongname"
    )
}

/// Checks `s` against a known format; unknown formats always pass.
pub fn validate(format: &str, s: &str) -> bool {
    match normalize(format).as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(s),
        "email" => is_email(s),
        "hostname" => is_hostname(s),
        "ipv4" => is_ipv4(s),
        "ipv6" => s.contains(':') && parse_ip(s),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => is_uuid(s, None),
        "uuid3" => is_uuid(s, Some('3')),
        "uuid4" => is_uuid(s, Some('4')),
        "uuid5" => is_uuid(s, Some('5')),
        "hexcolor" => {
            let h = s.strip_prefix('#').unwrap_or(s);
            (h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit())
        }
        "byte" => is_base64(s),
        "password" => true,
        "date" => is_date(s),
        "duration" => is_duration(s),
        "datetime" => is_date_time(s),
        "k8sshortname" => is_dns1123_label(s),
        "k8slongname" => is_dns1123_subdomain(s),
        _ => true,
    }
}

/// RFC 3339 full-date, with day-of-month checked against the month.
pub(crate) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some(),
        _ => false,
    }
}

/// Upstream splits on the (case-insensitive) `T`, requires a valid date
/// before it and `hh:mm:ss[.frac](Z|±hh:mm)` after it with hour <= 23 and
/// minute/second <= 59.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    let tb = time.as_bytes();
    if tb.len() < 9 || tb[2] != b':' || tb[5] != b':' {
        return false;
    }
    let two = |i: usize| tb[i].is_ascii_digit() && tb[i + 1].is_ascii_digit();
    if !(two(0) && two(3) && two(6)) {
        return false;
    }
    let mut rest = &time[8..];
    // Optional fraction: any single character followed by digits.
    let mut ch = rest.chars();
    if let Some(first) = ch.next() {
        let after = ch.as_str();
        let nd = after.bytes().take_while(|b| b.is_ascii_digit()).count();
        if first != 'z' && first != '+' && first != '-' && nd > 0 {
            rest = &after[nd..];
        } else if first != 'z' && first != '+' && first != '-' {
            return false;
        }
    }
    let zone_ok = rest == "z" || {
        let zb = rest.as_bytes();
        zb.len() == 6
            && (zb[0] == b'+' || zb[0] == b'-')
            && zb[3] == b':'
            && zb[1].is_ascii_digit()
            && zb[2].is_ascii_digit()
            && zb[4].is_ascii_digit()
            && zb[5].is_ascii_digit()
    };
    zone_ok && &time[0..2] <= "23" && &time[3..5] <= "59" && &time[6..8] <= "59"
}

/// Go's standard base64 with mandatory padding, non-empty.
fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .is_ok()
}

fn is_uuid(s: &str, version: Option<char>) -> bool {
    // Hyphens are optional between groups, case is ignored.
    let groups = [8usize, 4, 4, 4, 12];
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    for (gi, len) in groups.iter().enumerate() {
        if gi > 0 && b.get(i) == Some(&'-') {
            i += 1;
        }
        for k in 0..*len {
            let Some(c) = b.get(i) else { return false };
            if !c.is_ascii_hexdigit() {
                return false;
            }
            if let Some(v) = version {
                if gi == 2 && k == 0 && *c != v {
                    return false;
                }
                if gi == 3
                    && k == 0
                    && v != '3'
                    && !matches!(c.to_ascii_lowercase(), '8' | '9' | 'a' | 'b')
                {
                    return false;
                }
            }
            i += 1;
        }
    }
    i == b.len()
}

fn hostname_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        // A single label (letters, digits, symbols, one optional hyphen), or
        // dot-separated labels ending in an alphabetic top-level label.
        let ch = r"[a-zA-Z0-9\p{S}\p{L}]";
        let p = format!(
            r"^(?:{ch}(?:-?{ch}{{0,62}})?|(?:{ch}(?:[a-zA-Z0-9\-\p{{S}}\p{{L}}]{{0,61}}{ch})?\.)+[a-zA-Z\p{{L}}]{{2,63}})$"
        );
        Regex::new(&p).ok()
    })
    .as_ref()
}

fn is_hostname(s: &str) -> bool {
    let Some(re) = hostname_re() else {
        return false;
    };
    re.is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// IPv4 in the lenient ("sloppy") form Kubernetes accepts: leading zeros
/// are allowed in each octet.
fn parse_ipv4_sloppy(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

fn parse_ip(s: &str) -> bool {
    parse_ipv4_sloppy(s) || s.parse::<Ipv6Addr>().is_ok()
}

/// Upstream accepts anything that parses as an IP and contains a dot, which
/// includes IPv4-mapped IPv6 notation.
fn is_ipv4(s: &str) -> bool {
    s.contains('.') && (parse_ipv4_sloppy(s) || s.parse::<Ipv6Addr>().is_ok())
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 3 {
        return false;
    }
    let Ok(n) = bits.parse::<u32>() else {
        return false;
    };
    if parse_ipv4_sloppy(ip) {
        n <= 32
    } else if ip.parse::<Ipv6Addr>().is_ok() {
        n <= 128
    } else {
        false
    }
}

fn is_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if matches!(parts.len(), 6 | 8 | 20) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    matches!(parts.len(), 3 | 4 | 10) && parts.iter().all(|p| hex(p, 4))
}

/// Go's `url.ParseRequestURI`: an absolute URI or an absolute path, without
/// control characters, with well-formed percent escapes and a clean host.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f) {
        return false;
    }
    if !percent_ok(s) {
        return false;
    }
    if s == "*" || s.starts_with('/') {
        return true;
    }
    let Some(colon) = s.find(':') else {
        return false;
    };
    let scheme = &s[..colon];
    let mut sc = scheme.chars();
    let scheme_ok = sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return false;
    }
    let rest = &s[colon + 1..];
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let authority = &after[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.contains(' ') {
            return false;
        }
        if let Some(h) = host.strip_prefix('[') {
            let Some((ip6, port)) = h.split_once(']') else {
                return false;
            };
            return ip6
                .split('%')
                .next()
                .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok())
                && port_ok(port);
        }
        if let Some((_, port)) = host.rsplit_once(':') {
            return port_ok(&format!(":{port}"));
        }
    }
    true
}

fn port_ok(p: &str) -> bool {
    p.is_empty()
        || p.strip_prefix(':')
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
}

fn percent_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(x), Some(y)) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// A pragmatic subset of RFC 5322 addresses as `net/mail` accepts them:
/// `local@domain` or `Display Name <local@domain>`.
fn is_email(s: &str) -> bool {
    let s = s.trim();
    let addr = if let Some(open) = s.rfind('<') {
        let Some(inner) = s[open + 1..].strip_suffix('>') else {
            return false;
        };
        inner
    } else {
        s
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom =
        |p: &str| !p.is_empty() && p.split('.').all(|a| !a.is_empty() && a.chars().all(atext));
    let local_ok =
        dot_atom(local) || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"'));
    let domain_ok = dot_atom(domain) || (domain.starts_with('[') && domain.ends_with(']'));
    local_ok && domain_ok
}

/// Go's `time.ParseDuration`, or upstream's lenient fallback that finds
/// `<digits><space?><unit word>` runs (`3 days`, `1 week`).
fn is_duration(s: &str) -> bool {
    go_parse_duration(s) || lenient_duration(s)
}

fn go_parse_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        let (mut num_len, mut frac_len) = (int_len, 0);
        if rest[int_len..].starts_with('.') {
            frac_len = rest[int_len + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_digit())
                .count();
            num_len = int_len + 1 + frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return false;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

fn lenient_duration(s: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| Regex::new(r"([0-9]+)\s*([A-Za-zµ]+)").ok())
        .as_ref()
    else {
        return false;
    };
    // Each unit family: the short spellings must match exactly, the last
    // (long) spelling only as a prefix ("days" matches "day").
    const UNITS: &[&[&str]] = &[
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let mut ok = false;
    for cap in re.captures_iter(s) {
        let (Some(num), Some(unit)) = (cap.get(1), cap.get(2)) else {
            continue;
        };
        if num.as_str().parse::<i64>().is_err() {
            return false;
        }
        let unit = unit.as_str().trim().to_lowercase();
        for family in UNITS {
            let last = family.len() - 1;
            for (i, v) in family.iter().enumerate() {
                if (i == last && unit.starts_with(v)) || unit.eq_ignore_ascii_case(v) {
                    ok = true;
                }
            }
        }
    }
    ok
}

pub(crate) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(validate("date-time", "2024-02-29T10:00:00Z"));
        assert!(validate("date-time", "2024-02-29t10:00:00.123+02:00"));
        assert!(!validate("date-time", "2023-02-29T10:00:00Z"));
        assert!(!validate("date-time", "2024-01-01T24:00:00Z"));
        assert!(!validate("date-time", "2024-01-01 10:00:00Z"));
        assert!(!validate("date-time", "2024-01-01T10:00:00"));
        assert!(validate("date", "2024-01-31"));
        assert!(!validate("date", "2024-1-31"));
        assert!(validate("byte", "aGVsbG8="));
        assert!(!validate("byte", "aGVsbG8"));
        assert!(!validate("byte", ""));
        assert!(validate("uri", "https://example.com/a?b=c"));
        assert!(validate("uri", "/just/a/path"));
        assert!(!validate("uri", "relative/path"));
        assert!(!validate("uri", "http://a b/"));
        assert!(validate("email", "a.b@example.com"));
        assert!(validate("email", "Jane <jane@example.com>"));
        assert!(!validate("email", "not-an-email"));
        assert!(validate("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(validate("uuid", "123E4567E89B12D3A456426614174000"));
        assert!(!validate("uuid", "123e4567-e89b-12d3-a456-42661417400"));
        assert!(validate("uuid4", "123e4567-e89b-42d3-a456-426614174000"));
        assert!(!validate("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(validate("hostname", "example.com"));
        assert!(validate("hostname", "localhost"));
        assert!(!validate("hostname", "-bad.com"));
        assert!(!validate("hostname", "example.c0m"));
        assert!(validate("ipv4", "10.0.0.1"));
        assert!(validate("ipv4", "010.0.0.1"));
        assert!(!validate("ipv4", "256.0.0.1"));
        assert!(!validate("ipv4", "::1"));
        assert!(validate("ipv6", "::1"));
        assert!(!validate("ipv6", "10.0.0.1"));
        assert!(validate("cidr", "10.0.0.0/8"));
        assert!(validate("cidr", "fd00::/64"));
        assert!(!validate("cidr", "10.0.0.0/33"));
        assert!(!validate("cidr", "10.0.0.0"));
        assert!(validate("duration", "1h30m"));
        assert!(validate("duration", "1.5s"));
        assert!(validate("duration", "3 days"));
        assert!(!validate("duration", "soon"));
        assert!(validate("mac", "01:23:45:67:89:ab"));
        assert!(validate("unknown-format", "anything"));
        assert!(!is_known("int32"));
    }
}
