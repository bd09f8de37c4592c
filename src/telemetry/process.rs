//! The standard `process_*` metrics, read from `/proc/self` when `/metrics`
//! is scraped: they are the kernel's figures at that moment, so nothing
//! needs to poll. Off Linux (no `/proc`) the families are left out.

use std::fmt::Write as _;

use super::catalog;

/// Clock ticks per second in `/proc/<pid>/stat`. The kernel reports these
/// fields in USER_HZ, which is 100 on every Linux architecture as part of
/// its ABI, whatever the kernel's internal HZ.
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends the process families, with `# HELP` and `# TYPE`, to `out`.
pub fn render(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The command name (field 2) may hold spaces and parentheses; fields
    // after its closing parenthesis are plain numbers.
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return;
    };
    // Field 3 (state) is the first after the name, so field n is at n - 3.
    let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        write(
            out,
            "process_cpu_seconds_total",
            (utime + stime) / TICKS_PER_SECOND,
        );
    }
    if let Some(kib) = status_kib("VmRSS:") {
        write(out, "process_resident_memory_bytes", kib * 1024.0);
    }
    if let Some(bytes) = field(23) {
        write(out, "process_virtual_memory_bytes", bytes);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        write(out, "process_open_fds", fds.count() as f64);
    }
    if let Some(max) = max_open_files() {
        write(out, "process_max_fds", max);
    }
    if let (Some(start_ticks), Some(boot)) = (field(22), boot_time()) {
        write(
            out,
            "process_start_time_seconds",
            boot + start_ticks / TICKS_PER_SECOND,
        );
    }
}

fn write(out: &mut String, name: &str, value: f64) {
    let m = catalog::find(name).expect("process metrics are in the catalog");
    let _ = write!(
        out,
        "# HELP {name} {}\n# TYPE {name} {}\n{name} {value}\n\n",
        m.help,
        m.kind.as_str()
    );
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit on open files; `None` when unlimited.
fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When the machine booted, in seconds since the Unix epoch.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn process_metrics_read_plausible_figures_from_proc() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let mut out = String::new();
        render(&mut out);
        assert!(value(&out, "process_open_fds") >= 1.0);
        assert!(value(&out, "process_max_fds") >= value(&out, "process_open_fds"));
        drop(file);
        // A test binary holds at least a few megabytes.
        assert!(value(&out, "process_resident_memory_bytes") > 1e6);
        assert!(
            value(&out, "process_virtual_memory_bytes")
                > value(&out, "process_resident_memory_bytes")
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value(&out, "process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 24.0 * 3600.0,
            "{start} vs {now}"
        );
        assert!(value(&out, "process_cpu_seconds_total") >= 0.0);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(out.contains("# HELP process_open_fds "));
    }
}
