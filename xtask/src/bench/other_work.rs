//! How much of the machine other programs took while a benchmark ran.
//!
//! A load average cannot tell: on 2 cores a server indexing and a client
//! sending already make a load of 2 to 3, with nothing else running. Here the
//! CPU time the whole machine spent busy (`/proc/stat`) is compared with that
//! of this process and its descendants (the servers it started, the
//! contenders, the processes they started): what is left is other programs'.

use std::collections::HashMap;
use std::time::Instant;

/// Above this many CPUs' worth of other programs' work, on average over a
/// run, its figures are called noisy in the report.
pub(super) const BUSY_CPUS: f64 = 0.25;

/// The machine and this process tree at the start of a measurement.
pub(super) struct OtherWork {
    started: Instant,
    busy: f64,
    ours: HashMap<u32, f64>,
}

impl OtherWork {
    /// Starts measuring; `None` without `/proc`.
    pub(super) fn start() -> Option<OtherWork> {
        Some(OtherWork {
            started: Instant::now(),
            busy: machine_busy_seconds()?,
            ours: our_processes(),
        })
    }

    /// Other programs' CPU time since [`OtherWork::start`], as CPUs' worth on
    /// average (0.5: half a core the whole time); `None` without `/proc`.
    ///
    /// Call it before stopping the servers: a process of ours that was killed
    /// may be reaped by init, its time then lost to the count of ours.
    pub(super) fn cpus(&self) -> Option<f64> {
        let secs = self.started.elapsed().as_secs_f64();
        let other = self.seconds()?;
        (secs > 0.0).then(|| other / secs)
    }

    /// Other programs' CPU time since [`OtherWork::start`], in seconds.
    fn seconds(&self) -> Option<f64> {
        let busy = machine_busy_seconds()? - self.busy;
        let now = our_processes();
        // A process of ours alive at both ends counts its difference; one born
        // since counts whole; one gone since was counted into its parent's
        // children time (its parent is ours), whole life included, so its
        // time at the start comes off.
        let mut ours: f64 = now
            .iter()
            .map(|(pid, cpu)| cpu - self.ours.get(pid).copied().unwrap_or(0.0))
            .sum();
        ours -= self
            .ours
            .iter()
            .filter(|(pid, _)| !now.contains_key(pid))
            .map(|(_, cpu)| cpu)
            .sum::<f64>();
        Some((busy - ours).max(0.0))
    }
}

/// The report's sentence on other programs' work, empty when there was little.
pub(super) fn caveat(cpus: Option<f64>) -> String {
    match cpus {
        Some(c) if c > BUSY_CPUS => format!(
            "> **Caveat: the machine was shared.** Other programs took {c:.2} CPUs on average \
             during the run (above {BUSY_CPUS}; the machine's busy time less this benchmark's \
             servers and clients), so the rates are noisy. Run it again on an idle machine for \
             the record.\n\n"
        ),
        _ => String::new(),
    }
}

/// One line for the report: how much other programs took.
pub(super) fn summary(cpus: Option<f64>) -> String {
    match cpus {
        Some(c) => format!("other programs took {c:.2} CPUs on average during the run"),
        None => "other programs' share of the CPUs was not measured (no /proc)".into(),
    }
}

/// The CPU time of every CPU spent not idle since boot, in seconds.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_busy(&stat).map(|ticks| ticks / clock_ticks())
}

/// `user + nice + system + irq + softirq + steal` of `/proc/stat`'s `cpu` line
/// (guest time is inside `user` already), in ticks.
fn parse_busy(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// This process and its descendants, each with its CPU time and that of its
/// children it reaped, in seconds.
fn our_processes() -> HashMap<u32, f64> {
    let tck = clock_ticks();
    let mut all = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(p) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                all.insert(pid, (p.ppid, p.own + p.children));
            }
        }
    }
    let me = std::process::id();
    let mut ours = HashMap::new();
    let mut todo = vec![me];
    while let Some(pid) = todo.pop() {
        if let Some(&(_, ticks)) = all.get(&pid)
            && ours.insert(pid, ticks / tck).is_none()
        {
            todo.extend(
                all.iter()
                    .filter(|(_, (ppid, _))| *ppid == pid)
                    .map(|(child, _)| *child),
            );
        }
    }
    ours
}

/// The parent and CPU times of a process, from its `/proc/<pid>/stat` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ProcTimes {
    pub(super) ppid: u32,
    /// `utime + stime`: all its threads, live and gone, in ticks.
    pub(super) own: f64,
    /// `cutime + cstime`: its children it waited for, in ticks.
    pub(super) children: f64,
}

/// Reads a `/proc/<pid>/stat` line; `None` if it is not one.
pub(super) fn parse_stat(stat: &str) -> Option<ProcTimes> {
    // Fields after the command name (field 2, which may hold spaces): state
    // is field 3, ppid field 4, utime..cstime fields 14 to 17.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| rest.get(i)?.parse::<f64>().ok();
    Some(ProcTimes {
        ppid: rest.get(1)?.parse().ok()?,
        own: ticks(11)? + ticks(12)?,
        children: ticks(13)? + ticks(14)?,
    })
}

/// `getconf CLK_TCK`, the unit of `/proc`'s CPU times (100 unless told).
pub(super) fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        crate::util::capture(
            std::process::Command::new("getconf").arg("CLK_TCK"),
            std::time::Duration::from_secs(5),
        )
        .ok()
        .and_then(|out| out.stdout.trim().parse().ok())
        .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_busy_time_and_process_times() {
        let stat = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        assert_eq!(parse_busy(stat), Some(161.0));
        let line = "1234 (a (strange) name) S 77 1234 1234 0 -1 4194304 10 0 0 0 \
                    40 2 6 1 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcTimes {
                ppid: 77,
                own: 42.0,
                children: 7.0
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_its_own() {
        let ours = our_processes();
        assert!(ours.contains_key(&std::process::id()), "{ours:?}");
    }

    /// Spins this thread until `done` is true, returning the seconds spun.
    fn spin_until(done: impl Fn() -> bool) -> f64 {
        let started = Instant::now();
        let mut x = 0u64;
        while !done() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert_ne!(x, 1);
        started.elapsed().as_secs_f64()
    }

    #[test]
    fn our_own_work_is_not_counted_and_an_orphan_is() {
        let probe = OtherWork::start().unwrap_or_else(|| panic!("no /proc"));
        let until = Instant::now() + std::time::Duration::from_millis(400);
        let spun = spin_until(|| Instant::now() >= until);
        let other = probe.seconds().unwrap_or(f64::NAN);
        assert!(
            other < 0.5 * spun,
            "our own {spun:.2} s of spinning counted as {other:.2} s of other work"
        );

        // A shell loop whose parent exits at once: init adopts it, it is no
        // longer ours, and its CPU time is other work.
        let done = std::env::temp_dir().join(format!("xtask-orphan-{}", std::process::id()));
        let _ = std::fs::remove_file(&done);
        let probe = OtherWork::start().unwrap_or_else(|| panic!("no /proc"));
        let started = Instant::now();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "(i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; touch '{}') >/dev/null 2>&1 &",
                done.display()
            ))
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success());
        // Not idle: the spin is ours, so it takes nothing from the count.
        spin_until(|| done.exists());
        let orphan = started.elapsed().as_secs_f64();
        let other = probe.seconds().unwrap_or(f64::NAN);
        let _ = std::fs::remove_file(&done);
        assert!(
            other > 0.5 * orphan,
            "an orphan's {orphan:.2} s of shell loop counted as only {other:.2} s of other work"
        );
    }
}
