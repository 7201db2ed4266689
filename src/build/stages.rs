//! Seconds, throughput and CPU use of each stage of a build.

use std::time::Instant;

/// Seconds and throughput of one stage of a build.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageRate {
    /// `entities`, `scan`, `collect`, `tokenize` or `encode`.
    pub name: &'static str,
    /// `sentences` or `contexts`.
    pub unit: &'static str,
    pub items: u64,
    /// Wall-clock seconds; for `tokenize`, which overlaps encoding, the busy time of its
    /// threads added up.
    pub secs: f64,
    /// Threads of the stage; for `encode`, batches encoded at a time.
    pub threads: usize,
    /// `encode` only: seconds of `secs` the encoder waited for tokenized contexts.
    pub waited_secs: f64,
    /// CPU seconds the whole process used during the stage (all threads, user and system),
    /// where the system tells (Linux); not for `tokenize`, which runs during `encode`.
    pub cpu_secs: Option<f64>,
}

/// CPU seconds (user + system, all threads) this process has used so far: Linux's
/// `/proc/self/stat`, in clock ticks of 1/100 s; `None` elsewhere.
pub fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields from the
    // state (field 3) on follow the last `)`; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Wall-clock and process CPU time since a stage began.
pub(crate) struct StageClock {
    wall: Instant,
    cpu: Option<f64>,
}

impl StageClock {
    pub(crate) fn start() -> Self {
        StageClock {
            wall: Instant::now(),
            cpu: process_cpu_secs(),
        }
    }
    /// Wall seconds and CPU seconds so far.
    pub(crate) fn read(&self) -> (f64, Option<f64>) {
        let cpu = match (self.cpu, process_cpu_secs()) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        (self.wall.elapsed().as_secs_f64(), cpu)
    }
}

impl StageRate {
    /// Items per second (per thread for `tokenize`).
    pub fn per_sec(&self) -> f64 {
        self.items as f64 / self.secs.max(1e-9)
    }

    /// CPU use during the stage, in cores kept busy on average (2.0: two cores all along).
    pub fn cores_busy(&self) -> Option<f64> {
        self.cpu_secs.map(|c| c / self.secs.max(1e-9))
    }

    /// `; CPU 1.96 cores` where the CPU time is known and the stage took long enough for the
    /// system's 1/100 s clock ticks to tell.
    fn cpu_note(&self) -> String {
        match self.cores_busy() {
            Some(c) if self.secs >= 0.5 => format!("; CPU {c:.2} cores"),
            _ => String::new(),
        }
    }

    /// One line, e.g. `scan: 930000 sentences in 4.10 s (226829 sentences/s, 2 threads; CPU
    /// 1.97 cores)`.
    pub fn describe(&self) -> String {
        let (n, unit) = (self.items, self.unit);
        let threads = format!(
            "{} thread{}",
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        match self.name {
            "tokenize" => format!(
                "{}: {n} {unit}, {:.2} s busy on {threads} ({:.0} {unit}/s per thread; overlaps encoding)",
                self.name,
                self.secs,
                self.per_sec()
            ),
            // A one-pass build: the contexts were kept during the scan.
            "collect" if unit == "contexts" => format!(
                "{}: {n} {unit} kept during the scan (their sentences spilled), grouped by entity in {:.2} s",
                self.name, self.secs
            ),
            "encode" => format!(
                "{}: {n} {unit} in {:.2} s ({:.1} {unit}/s, {} batch{} at a time), {:.2} s of it waiting for tokens{}",
                self.name,
                self.secs,
                self.per_sec(),
                self.threads,
                if self.threads == 1 { "" } else { "es" },
                self.waited_secs,
                self.cpu_note()
            ),
            _ => format!(
                "{}: {n} {unit} in {:.2} s ({:.0} {unit}/s, {threads}{})",
                self.name,
                self.secs,
                self.per_sec(),
                self.cpu_note()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_tell_their_cpu_use_where_the_system_does() {
        let cpu = process_cpu_secs();
        assert_eq!(cpu.is_some(), cfg!(target_os = "linux"));
        let mut s = StageRate {
            name: "scan",
            unit: "sentences",
            items: 10,
            secs: 2.0,
            threads: 2,
            cpu_secs: Some(3.9),
            ..Default::default()
        };
        assert!(
            s.describe().ends_with("2 threads; CPU 1.95 cores)"),
            "{}",
            s.describe()
        );
        s.secs = 0.1;
        assert!(!s.describe().contains("CPU"), "{}", s.describe());
        let e = StageRate {
            name: "encode",
            unit: "contexts",
            items: 100,
            secs: 4.0,
            threads: 2,
            waited_secs: 0.5,
            cpu_secs: Some(7.8),
        };
        assert_eq!(
            e.describe(),
            "encode: 100 contexts in 4.00 s (25.0 contexts/s, 2 batches at a time), 0.50 s of it waiting for tokens; CPU 1.95 cores"
        );
    }
}
