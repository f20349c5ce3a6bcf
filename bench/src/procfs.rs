//! Process figures from /proc: resident memory (VmRSS) and CPU time (utime + stime), plus
//! raising RLIMIT_NOFILE to the hard limit.

use std::time::Duration;

/// VmRSS of `pid` in KiB (`None` if the process is gone or /proc is unreadable).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&s)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time consumed so far by `pid` (all its threads).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&s)?;
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0,
    };
    Some(Duration::from_secs_f64(ticks as f64 / hz))
}

/// utime + stime in clock ticks from a /proc/PID/stat line (fields 14 and 15; the command
/// name in parentheses may contain spaces, so count from the last ')').
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Raise the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status =
            "Name:\tfullslack-chat\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(status), Some(12345));
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat), Some(300));
    }

    #[test]
    fn reads_own_process() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_time(std::process::id()).is_some());
    }
}
