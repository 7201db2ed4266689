//! Progress events shared by the CLI (a bar on stderr) and the GUI (a progress bar).

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the corpus and finding mentions.
    Scanning,
    /// Reading the sentences of the sampled contexts.
    Collecting,
    /// Running the model over the contexts.
    Encoding,
    /// Writing the table.
    Writing,
    /// Running cloze probes (one pass per norm, and one without the table).
    Evaluating,
    /// Laying out a map (epochs of t-SNE or UMAP).
    Mapping,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Scanning => "scanning corpus",
            Phase::Collecting => "collecting contexts",
            Phase::Encoding => "encoding contexts",
            Phase::Writing => "writing table",
            Phase::Evaluating => "running probes",
            Phase::Mapping => "laying out the map",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub phase: Phase,
    /// Sentences (scanning, collecting) or contexts (encoding) done so far.
    pub done: u64,
    /// Total for the phase when known.
    pub total: Option<u64>,
    /// Items per second in this phase (this run only, so a resumed build reports its own speed).
    pub per_sec: f64,
    pub eta_secs: Option<f64>,
}

impl Progress {
    pub fn fraction(&self) -> Option<f32> {
        self.total
            .filter(|&t| t > 0)
            .map(|t| (self.done as f64 / t as f64).min(1.0) as f32)
    }

    /// One line for a terminal or a status bar.
    pub fn describe(&self) -> String {
        if self.phase == Phase::Writing {
            // One step: the table is assembled from the rows spilled while encoding.
            return format!("{}…", self.phase.label());
        }
        let unit = match self.phase {
            Phase::Encoding => "contexts",
            Phase::Evaluating => "probes",
            Phase::Mapping => "epochs",
            _ => "sentences",
        };
        let mut s = match self.total {
            Some(t) => format!("{}: {}/{} {unit}", self.phase.label(), self.done, t),
            None => format!("{}: {} {unit}", self.phase.label(), self.done),
        };
        if self.per_sec > 0.0 {
            s.push_str(&format!(", {:.1} {unit}/s", self.per_sec));
        }
        if let Some(eta) = self.eta_secs {
            s.push_str(&format!(", ETA {}", format_secs(eta)));
        }
        s
    }
}

pub fn format_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Measures the rate of a phase from the moment it starts.
pub struct Meter {
    phase: Phase,
    start: Instant,
    start_done: u64,
    last_emit: Option<Instant>,
}

impl Meter {
    pub fn new(phase: Phase, start_done: u64) -> Self {
        Meter {
            phase,
            start: Instant::now(),
            start_done,
            last_emit: None,
        }
    }

    pub fn progress(&self, done: u64, total: Option<u64>) -> Progress {
        let secs = self.start.elapsed().as_secs_f64();
        let per_sec = if secs > 0.0 {
            done.saturating_sub(self.start_done) as f64 / secs
        } else {
            0.0
        };
        let eta_secs = match total {
            Some(t) if per_sec > 0.0 => Some(t.saturating_sub(done) as f64 / per_sec),
            _ => None,
        };
        Progress {
            phase: self.phase,
            done,
            total,
            per_sec,
            eta_secs,
        }
    }

    /// True at most ~10 times a second, so callers can throttle events.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        match self.last_emit {
            Some(t) if now.duration_since(t).as_millis() < 100 => false,
            _ => {
                self.last_emit = Some(now);
                true
            }
        }
    }
}
