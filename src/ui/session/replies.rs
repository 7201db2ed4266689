//! The worker's replies, routed through the job table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pelt::build::checkpoint_path;
use pelt::table::Table;
use pelt::worker::{Event, Reply};

use super::{Cancelled, Changed, Command, ErrorEntry, Pending, Question, Req, Retry, Session};

impl Session {
    // ----- replies -----

    /// Applies the replies that have arrived, then asks for what the visible tab needs.
    pub fn poll(&mut self) -> Changed {
        let mut changed = Changed::default();
        for event in self.worker.poll() {
            changed.merge(self.on_event(event));
        }
        changed.merge(self.resolve_pending_select());
        self.auto_requests();
        self.pump();
        changed
    }

    /// Applies one reply of the worker: an interim reply updates the job it is about, a final
    /// reply takes its job out of the job table and lands where that job was for. A reply to
    /// a job not in the table (overtaken, or of no concern to this session) changes nothing,
    /// except a model description, which says what the worker holds.
    pub fn on_event(&mut self, event: Event) -> Changed {
        let mut changed = Changed::default();
        let Event {
            id,
            generation,
            job,
            reply,
        } = event;
        if let Reply::ModelLoaded(info) | Reply::ModelChanged(info) = &reply {
            if generation == self.generation {
                self.status = Some(format!(
                    "Model {} loaded on {} ({})",
                    info.name, info.device, info.dtype
                ));
            }
            self.model = Some(info.clone());
            changed.project = true;
        }
        if generation != self.generation {
            // Another project's reply: only what the worker now holds still counts.
            return changed;
        }
        if !reply.is_final() {
            if let Reply::Progress(p) = reply {
                match self.jobs.get(&id) {
                    Some(Pending::Build) => {
                        self.build.progress = Some(p);
                        changed.project = true;
                    }
                    Some(Pending::Evaluate) => {
                        self.eval_progress = Some(p);
                        changed.results = true;
                    }
                    Some(Pending::Map { .. }) => {
                        self.map.progress = Some(p);
                        changed.results = true;
                    }
                    _ => {}
                }
            }
            return changed;
        }
        let Some(pending) = self.jobs.remove(&id) else {
            return changed;
        };
        changed.merge(self.on_final(pending, job, reply));
        changed
    }

    /// Lands the final reply of a job that was for `pending`.
    fn on_final(&mut self, pending: Pending, job: &str, reply: Reply) -> Changed {
        let mut changed = Changed::default();
        match (pending, reply) {
            (Pending::Compare { table_gen }, reply) => {
                return self.on_compared(table_gen, job, reply)
            }
            (pending, Reply::Failed { message, refused }) => {
                match &pending {
                    Pending::Build => self.build_ended(),
                    Pending::Map { method, .. } => self.on_map_failed(*method, &message),
                    Pending::Classes(c) => {
                        self.map.classes_failed = Some((c.clone(), message.clone()))
                    }
                    _ => {}
                }
                let retry = match (&pending, refused) {
                    (Pending::Build, Some(n)) => Some((
                        n,
                        Retry::BuildReplacing {
                            resume: self.build.resuming,
                        },
                    )),
                    (Pending::Save, Some(n)) => self.last_save.clone().map(|r| (n, r)),
                    _ => None,
                };
                match retry {
                    Some((n, retry)) => {
                        self.status = Some("Waiting for your answer: nothing was written.".into());
                        self.question = Some(Question {
                            text: format!(
                                "{} exists ({}) and is not a {}. Replace it?",
                                pelt::escape::path(&n.path),
                                pelt::outpath::human_size(n.size),
                                n.kind.label()
                            ),
                            retry,
                        });
                    }
                    None => self.error(job, message),
                }
                changed.project = true;
            }
            (Pending::LoadModel, Reply::ModelLoaded(_)) => {}
            (
                Pending::Build,
                Reply::Built {
                    table,
                    report,
                    saved_to,
                },
            ) => {
                self.build_ended();
                self.build.cancelled = None;
                self.build.elapsed_secs = self
                    .build
                    .started
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                self.status = Some(format!(
                    "Built: {} contexts for {} of {} entities in {:.1} s ({:.0} contexts/s){}",
                    report.contexts,
                    table.len() - report.not_found.len(),
                    table.len(),
                    self.build.elapsed_secs,
                    report.contexts_per_sec,
                    saved_to
                        .as_ref()
                        .map(|p| format!("; saved to {}", p.display()))
                        .unwrap_or_default()
                ));
                self.build.report = Some(*report);
                self.build.saved_to = saved_to.clone();
                changed.merge(self.set_table(table, saved_to));
            }
            (
                Pending::Build,
                Reply::BuildCancelled {
                    done,
                    total,
                    checkpoint,
                },
            ) => {
                self.build_ended();
                self.status = Some(if total > 0 {
                    format!(
                        "Build cancelled after {done} of {total} contexts ({:.0}%){}",
                        100.0 * done as f64 / total as f64,
                        if checkpoint.is_some() {
                            "; Resume continues from the checkpoint"
                        } else {
                            ""
                        }
                    )
                } else {
                    "Build cancelled while scanning the corpus (nothing to resume)".into()
                });
                self.build.cancelled = Some(Cancelled {
                    done,
                    total,
                    checkpoint,
                });
                changed.project = true;
            }
            (Pending::OpenTable, Reply::TableOpened { table, path }) => {
                self.status = Some(format!("Opened table {}", path.display()));
                self.build.report = None;
                changed.merge(self.set_table(table, Some(path)));
            }
            (Pending::Save, Reply::Saved { path }) => {
                self.status = Some(format!("Saved {}", path.display()));
                changed.project = true;
            }
            (Pending::Evaluate, Reply::Evaluated(r)) => {
                self.status = Some("Evaluation done".into());
                self.project.eval_results = Some(*r);
                self.project_dirty = true;
                changed.results = true;
                changed.project = true;
            }
            (Pending::Map { read_only, .. }, Reply::Mapped(r)) => {
                changed.merge(self.on_map(read_only, *r));
            }
            (Pending::Classes(c), Reply::Classes(classes)) => {
                self.map.classes = Some((c, classes));
                changed.results = true;
            }
            (Pending::Request { table_gen, req }, reply) if table_gen == self.table_gen => {
                match (req, reply) {
                    (Req::Inspect { .. }, Reply::Inspected(ins)) => self.inspection = Some(*ins),
                    (Req::Neighbours { .. }, Reply::Neighbours(n)) => self.neighbours = Some(n),
                    (Req::NormCompare { .. }, Reply::Previewed(p)) => self.norm_compare = Some(*p),
                    (Req::Preview { .. }, Reply::Previewed(p)) => self.preview = Some(*p),
                    _ => return changed,
                }
                changed.results = true;
            }
            // An answer for an older table (its lane is free again), or a reply that does not
            // fit its job.
            _ => {}
        }
        changed
    }

    fn build_ended(&mut self) {
        self.build.cancelling = false;
        self.refresh_checkpoint();
    }

    /// Records an error (repeats of the latest one are counted, not listed again).
    pub fn error(&mut self, job: &str, message: String) {
        self.status = None;
        if let Some(last) = self.errors.last_mut() {
            if last.job == job && last.message == message {
                last.count += 1;
                last.at = Instant::now();
                return;
            }
        }
        self.errors.push(ErrorEntry {
            job: job.into(),
            message,
            count: 1,
            at: Instant::now(),
        });
    }

    pub(super) fn set_table(&mut self, table: Arc<Table>, path: Option<PathBuf>) -> Changed {
        self.project.options.norm = table.norm;
        if self.selected.is_some_and(|s| s >= table.len()) {
            self.selected = None;
        }
        self.table = Some(table);
        self.table_path = path;
        self.forget_table_views();
        Changed {
            entities: true,
            selection: true,
            results: true,
            project: true,
        }
    }

    /// Drops everything computed from the current table (a new one is coming or it is gone).
    pub(super) fn forget_table_views(&mut self) {
        self.table_gen += 1;
        self.rows_changed();
        self.inspection = None;
        self.neighbours = None;
        self.norm_compare = None;
        self.preview = None;
        self.preview_disabled.clear();
        self.forget_map();
        self.requests.clear();
    }

    pub(super) fn refresh_checkpoint(&mut self) {
        self.build.checkpoint = self
            .project
            .table
            .as_ref()
            .is_some_and(|t| checkpoint_path(t).is_file());
    }

    pub(super) fn resolve_pending_select(&mut self) -> Changed {
        let mut changed = Changed::default();
        if let Some(name) = self.pending_select.clone() {
            if self.table.is_some()
                || (self.entity_list.is_some()
                    && self.project.table.as_ref().is_none_or(|t| !t.is_file()))
            {
                if let Some(i) = self
                    .find_entity(&name)
                    .filter(|&i| self.selected != Some(i))
                {
                    changed.merge(self.apply(Command::Select(i)));
                }
                if self.table.is_some() {
                    self.pending_select = None;
                }
            }
        }
        if self.build_when_ready && self.entity_list.is_some() && !self.worker.is_busy() {
            self.build_when_ready = false;
            if self.table.is_none() {
                self.start_build(false);
                changed.project = true;
            }
        }
        if self.eval_when_ready
            && self.table.is_some()
            && self.model.is_some()
            && !self.worker.is_busy()
        {
            self.eval_when_ready = false;
            changed.merge(self.apply(Command::RunEval));
        }
        changed
    }
}
