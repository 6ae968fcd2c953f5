//! CPU time and peak memory of a process, and the machine's busy CPU time,
//! read from Linux's `/proc` as described in proc(5).
//!
//! A process's CPU time is `utime + stime` from `/proc/<pid>/stat` (fields
//! 14 and 15, in clock ticks), and its peak memory is `VmHWM` from
//! `/proc/<pid>/status`.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Clock ticks per second that Linux uses when `getconf` is unavailable.
const DEFAULT_CLOCK_TICKS: u64 = 100;

/// Returns user plus system CPU time in clock ticks from the text of
/// `/proc/<pid>/stat`.
pub(crate) fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may contain spaces
    // and parentheses, so fields are counted from the last ')'.
    let close = stat
        .rfind(')')
        .context("invalid /proc stat: missing ')' after the command name")?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let field = |number: usize| -> Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("invalid /proc stat: field {number} is missing"))?;
        text.parse().with_context(|| {
            format!("invalid /proc stat: field {number} is {text:?}, expected a number")
        })
    };
    Ok(field(14)? + field(15)?)
}

/// Returns the `field` line of `/proc/<pid>/status` text in KiB, such as
/// `VmHWM` (peak resident set size) or `VmRSS` (resident set size now).
pub(crate) fn parse_status_kib(status: &str, field: &str) -> Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("invalid /proc status: no {field} line"))?;
    let mut parts = line.split_whitespace();
    let value = parts.next().unwrap_or_default();
    let unit = parts.next().unwrap_or_default();
    if unit != "kB" {
        bail!("invalid /proc status: {field} unit is {unit:?}, expected \"kB\"");
    }
    value
        .parse()
        .with_context(|| format!("invalid /proc status: {field} is {value:?}, expected a number"))
}

/// Returns the busy CPU time of all processes in clock ticks from the text
/// of `/proc/stat`: the `cpu` line's user, nice, system, irq, softirq and
/// steal columns, leaving out idle and iowait. Guest time is already part
/// of user and nice.
pub(crate) fn parse_busy_ticks(stat: &str) -> Result<u64> {
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .context("invalid /proc/stat: no \"cpu\" line")?;
    let columns: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid /proc/stat: non-numeric column in {line:?}"))?;
    if columns.len() < 8 {
        bail!(
            "invalid /proc/stat: {line:?} has {} columns, expected at least 8",
            columns.len()
        );
    }
    // Columns: user nice system idle iowait irq softirq steal ...
    Ok(columns[0] + columns[1] + columns[2] + columns[5] + columns[6] + columns[7])
}

/// Returns the busy CPU time of the whole machine in seconds.
pub(crate) fn machine_busy_seconds(clock_ticks: u64) -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("failed to read /proc/stat")?;
    Ok(parse_busy_ticks(&text)? as f64 / clock_ticks as f64)
}

/// Returns the CPU time of process `pid` in seconds.
pub(crate) fn cpu_seconds(pid: u32, clock_ticks: u64) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    Ok(parse_cpu_ticks(&text)? as f64 / clock_ticks as f64)
}

/// Returns the summed CPU time in seconds of every process whose command
/// name (`/proc/<pid>/comm`) is one of `names`. Processes that exit between
/// two readings take their CPU time with them, so a difference of two sums
/// can come out low.
pub(crate) fn cpu_seconds_of_commands(names: &[&str], clock_ticks: u64) -> Result<f64> {
    let mut seconds = 0.0;
    for entry in std::fs::read_dir("/proc").context("failed to list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if names.contains(&comm.trim_end()) {
            // The process may exit between listing and reading.
            seconds += cpu_seconds(pid, clock_ticks).unwrap_or(0.0);
        }
    }
    Ok(seconds)
}

/// Returns the peak resident set size of process `pid` in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Returns the resident set size of process `pid` now, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    parse_status_kib(&text, field)
}

/// Returns the clock ticks per second from `getconf CLK_TCK`, or 100 (the
/// value on Linux) with a warning when `getconf` fails.
pub(crate) fn clock_ticks_per_second() -> u64 {
    match read_getconf_clock_ticks() {
        Ok(ticks) => ticks,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "getconf CLK_TCK failed, so {DEFAULT_CLOCK_TICKS} ticks per second are assumed");
            DEFAULT_CLOCK_TICKS
        }
    }
}

fn read_getconf_clock_ticks() -> Result<u64> {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("failed to run getconf")?;
    if !output.status.success() {
        bail!("getconf CLK_TCK exited with {}", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let ticks: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK printed {text:?}, expected a number"))?;
    if ticks == 0 {
        bail!("getconf CLK_TCK printed 0");
    }
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc/<pid>/stat` line whose command name contains a space and
    /// a parenthesis, with utime 1234 and stime 56.
    const STAT: &str = "4242 (hook line)) S 1 4242 4242 0 -1 4194560 2818 0 0 0 \
                        1234 56 0 0 20 0 9 0 1870 123456789 4567 18446744073709551615";

    const STATUS: &str = "Name:\thookline\nState:\tS (sleeping)\nVmPeak:\t  812344 kB\n\
                          VmSize:\t  812340 kB\nVmHWM:\t   48812 kB\nVmRSS:\t   40100 kB\nThreads:\t9\n";

    #[test]
    fn cpu_ticks_add_utime_and_stime() {
        assert_eq!(parse_cpu_ticks(STAT).unwrap(), 1234 + 56);
    }

    #[test]
    fn cpu_ticks_of_own_process() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_cpu_ticks(&text).is_ok(), "{text}");
    }

    #[test]
    fn cpu_ticks_reject_truncated_stat() {
        let error = parse_cpu_ticks("1 (init) S 0 1 1").unwrap_err();
        assert!(error.to_string().contains("field 14"), "{error}");
        assert!(parse_cpu_ticks("no parenthesis").is_err());
    }

    #[test]
    fn busy_ticks_skip_idle_and_iowait() {
        let stat = "cpu  100 2 30 5000 40 6 7 8 0 0\ncpu0 50 1 15 2500 20 3 3 4 0 0\nintr 1\n";
        assert_eq!(parse_busy_ticks(stat).unwrap(), 100 + 2 + 30 + 6 + 7 + 8);
    }

    #[test]
    fn busy_ticks_reject_short_line() {
        assert!(parse_busy_ticks("cpu  1 2 3\n").is_err());
        assert!(parse_busy_ticks("cpu0 1 2 3 4 5 6 7 8\n").is_err());
    }

    #[test]
    fn vm_hwm_in_kib() {
        assert_eq!(parse_status_kib(STATUS, "VmHWM").unwrap(), 48812);
    }

    #[test]
    fn vm_rss_is_not_confused_with_another_field() {
        assert_eq!(parse_status_kib(STATUS, "VmRSS").unwrap(), 40100);
        assert!(parse_status_kib("VmRSSx:\t5 kB\n", "VmRSS").is_err());
    }

    #[test]
    fn vm_hwm_missing_or_bad_unit() {
        assert!(parse_status_kib("Name:\tx\nVmRSS:\t1 kB\n", "VmHWM").is_err());
        assert!(parse_status_kib("VmHWM:\t12 MB\n", "VmHWM").is_err());
        assert!(parse_status_kib("VmHWM:\tmany kB\n", "VmHWM").is_err());
    }

    #[test]
    fn clock_ticks_positive() {
        assert!(clock_ticks_per_second() > 0);
    }
}
