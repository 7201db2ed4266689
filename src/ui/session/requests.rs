//! Requests whose results a tab shows: what the visible tab needs, queued "latest wins" and
//! sent one per lane.

use std::collections::VecDeque;

use pelt::worker::Task;

use super::{Pending, Session, Tab, TOP_K};

/// Kinds of model requests whose results are shown in a tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Inspect,
    Neighbours,
    NormCompare,
    Preview,
}

/// A model request, also the key that tells whether a shown result is current.
#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    Inspect {
        entity: usize,
    },
    Neighbours {
        entity: usize,
        center: bool,
        k: usize,
    },
    NormCompare {
        text: String,
        a: f32,
        b: f32,
    },
    Preview {
        text: String,
        disabled: Vec<(usize, usize)>,
        a: f32,
        b: f32,
    },
}

/// Requests that share a lane wait for each other: one in flight at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Inspect,
    Neighbours,
    FillMask,
}

impl Lane {
    const ALL: [Lane; 3] = [Lane::Inspect, Lane::Neighbours, Lane::FillMask];
}

impl Req {
    pub fn purpose(&self) -> Purpose {
        match self {
            Req::Inspect { .. } => Purpose::Inspect,
            Req::Neighbours { .. } => Purpose::Neighbours,
            Req::NormCompare { .. } => Purpose::NormCompare,
            Req::Preview { .. } => Purpose::Preview,
        }
    }

    fn lane(&self) -> Lane {
        match self {
            Req::Inspect { .. } => Lane::Inspect,
            Req::Neighbours { .. } => Lane::Neighbours,
            Req::NormCompare { .. } | Req::Preview { .. } => Lane::FillMask,
        }
    }
}

/// Model requests: what was last asked for each purpose and the newest waiting request per
/// purpose ("latest wins" while a slider is dragged). Those in flight are in the session's job
/// table, at most one per lane.
#[derive(Default)]
pub(super) struct Requests {
    last: Vec<(Purpose, u64, Req)>,
    queued: VecDeque<Req>,
}

impl Requests {
    /// Asks for `req` unless it is what was last asked for (in this table generation).
    pub(super) fn want(&mut self, table_gen: u64, req: Req) {
        let p = req.purpose();
        if self
            .last
            .iter()
            .any(|(q, g, r)| *q == p && *g == table_gen && *r == req)
        {
            return;
        }
        self.last.retain(|(q, _, _)| *q != p);
        self.last.push((p, table_gen, req.clone()));
        self.queued.retain(|r| r.purpose() != p);
        self.queued.push_back(req);
    }

    pub(super) fn forget(&mut self, p: Purpose) {
        self.last.retain(|(q, _, _)| *q != p);
    }

    /// Whether a request for `p` waits to be sent.
    pub(super) fn queued(&self, p: Purpose) -> bool {
        self.queued.iter().any(|r| r.purpose() == p)
    }

    /// Forgets what was asked; requests in flight still hold their lane until answered.
    pub(super) fn clear(&mut self) {
        self.last.clear();
        self.queued.clear();
    }

    /// The next queued request whose lane is not in `busy`.
    fn next(&mut self, busy: &[Lane]) -> Option<Req> {
        let i = self.queued.iter().position(|r| !busy.contains(&r.lane()))?;
        self.queued.remove(i)
    }
}

impl Session {
    // ----- model requests -----

    /// Asks the worker for what the visible tab shows, when it is missing or out of date.
    pub(super) fn auto_requests(&mut self) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let g = self.table_gen;
        let sel = self
            .selected
            .filter(|&e| e < table.len() && table.counts[e] > 0);
        let (a, b) = (self.state.norm_a, self.state.norm_b);
        match self.state.tab {
            Tab::Inspector | Tab::Norm => {
                if let Some(e) = sel {
                    self.requests.want(g, Req::Inspect { entity: e });
                }
                if self.state.tab == Tab::Norm && !self.state.probe.trim().is_empty() {
                    let text = self.state.probe.clone();
                    self.requests.want(g, Req::NormCompare { text, a, b });
                }
            }
            Tab::Neighbours => {
                if let Some(e) = sel {
                    let (center, k) = (self.state.center, self.state.neighbours_k);
                    self.requests.want(
                        g,
                        Req::Neighbours {
                            entity: e,
                            center,
                            k,
                        },
                    );
                }
            }
            Tab::Preview => {
                if !self.state.preview_text.trim().is_empty() {
                    let text = self.state.preview_text.clone();
                    let disabled = self.preview_disabled.clone();
                    self.requests.want(
                        g,
                        Req::Preview {
                            text,
                            disabled,
                            a,
                            b,
                        },
                    );
                }
            }
            Tab::Map => {
                self.auto_map();
                if let Some(e) = sel.filter(|_| self.state.map_neighbours) {
                    let (center, k) = (self.state.center, self.state.neighbours_k);
                    self.requests.want(
                        g,
                        Req::Neighbours {
                            entity: e,
                            center,
                            k,
                        },
                    );
                }
            }
            Tab::Compare => self.compare_auto(),
            Tab::Overview | Tab::Evaluate => {}
        }
    }

    /// Sends the next queued request of each idle lane.
    pub(super) fn pump(&mut self) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let norm = self.norm();
        // The inspector runs the model over all of an entity's contexts (at most K).
        let limit = table.meta.k.max(1);
        for _ in Lane::ALL {
            let busy: Vec<Lane> = self
                .jobs
                .values()
                .filter_map(|p| match p {
                    Pending::Request { req, .. } => Some(req.lane()),
                    _ => None,
                })
                .collect();
            let Some(req) = self.requests.next(&busy) else {
                break;
            };
            let table = table.clone();
            let task = match &req {
                Req::Inspect { entity } => Task::Inspect {
                    table,
                    entity: *entity,
                    top_k: 5,
                    limit,
                    norms: pelt::analysis::norms::loss_norms(),
                },
                Req::Neighbours { entity, center, k } => Task::Neighbours {
                    table,
                    entity: *entity,
                    k: *k,
                    center: *center,
                    norm,
                },
                Req::NormCompare { text, a, b } => Task::Preview {
                    table,
                    text: text.clone(),
                    disabled: vec![],
                    norm_a: *a,
                    norm_b: *b,
                    top_k: TOP_K,
                },
                Req::Preview {
                    text,
                    disabled,
                    a,
                    b,
                } => Task::Preview {
                    table,
                    text: text.clone(),
                    disabled: disabled.clone(),
                    norm_a: *a,
                    norm_b: *b,
                    top_k: TOP_K,
                },
            };
            let table_gen = self.table_gen;
            self.send(Pending::Request { table_gen, req }, task);
        }
    }
}
