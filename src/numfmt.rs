//! Numbers as people read them, shared by the portal and the bench's
//! reports: thousands separators, latencies and sizes with their units.

/// `30000` → `30,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate or count measured as `f64`, rounded, with thousands separators.
pub fn format_rate(value: f64) -> String {
    if !value.is_finite() || value < 0.0 {
        return "n/a".into();
    }
    thousands(value.round() as u64)
}

/// Latency with the unit that keeps it readable: ns below a microsecond,
/// µs below a millisecond,
/// ms below a second, seconds beyond.
pub fn format_latency_us(us: f64) -> String {
    if !us.is_finite() || us < 0.0 {
        "n/a".into()
    } else if us < 1.0 {
        format!("{:.0} ns", us * 1_000.0)
    } else if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Decimal (1 KB = 1,000 B) byte sizes with two or three significant digits.
pub fn format_bytes(bytes: f64) -> String {
    if !bytes.is_finite() || bytes < 0.0 {
        return "n/a".into();
    }
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes > 0.0 && bytes < 1.0 {
        // A cache that rarely reaches Redis averages a fraction of a byte.
        return format!("{bytes:.2} B");
    }
    if bytes < 1_000.0 {
        return format!("{bytes:.0} B");
    }
    let mut value = bytes / 1_000.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1_000.0 {
            break;
        }
        value /= 1_000.0;
        unit = next;
    }
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// A per-check figure for the runs table: whole numbers with separators
/// once the fraction stops mattering, one decimal below that, so a
/// near-cache's 0.02 B/check does not read as 0.
pub fn format_measure(value: f64) -> String {
    if value.is_finite() && value.abs() >= 100.0 {
        format_rate(value)
    } else {
        format_decimal(value, if value.abs() < 1.0 { 2 } else { 1 })
    }
}

pub fn format_decimal(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".into()
    }
}

pub fn format_gib(bytes: u64) -> String {
    format!(
        "{:.1} GiB memory",
        bytes as f64 / (1024.0 * 1024.0 * 1024.0)
    )
}

pub fn format_seconds(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// Compact tick labels for log axes: `30k`, `1M`, `0.25`.
pub fn axis_number(value: f64) -> String {
    if !value.is_finite() {
        return String::new();
    }
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", significant(value / 1e6))
    } else if magnitude >= 1e3 {
        format!("{}k", significant(value / 1e3))
    } else {
        significant(value)
    }
}

/// Three significant digits without trailing zeros.
pub fn significant(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let decimals = (2 - value.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators_group_every_three_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(30_000), "30,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(1_234_567_890), "1,234,567,890");
        assert_eq!(format_rate(12_345.6), "12,346");
    }

    #[test]
    fn latencies_use_the_unit_that_keeps_them_readable() {
        assert_eq!(format_latency_us(0.0412), "41 ns");
        assert_eq!(format_latency_us(2.34), "2.3 µs");
        assert_eq!(format_latency_us(250.4), "250 µs");
        assert_eq!(format_latency_us(2_345.0), "2.35 ms");
        assert_eq!(format_latency_us(12_345.0), "12.3 ms");
        assert_eq!(format_latency_us(2_500_000.0), "2.50 s");
        assert_eq!(format_latency_us(f64::NAN), "n/a");
    }

    #[test]
    fn byte_sizes_are_decimal_and_short() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(0.02), "0.02 B");
        assert_eq!(format_bytes(4.0), "4 B");
        assert_eq!(format_bytes(1_234.0), "1.2 KB");
        assert_eq!(format_bytes(291_000.0), "291 KB");
        assert_eq!(format_bytes(9_100_000.0), "9.1 MB");
    }
}
