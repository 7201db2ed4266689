//! The Compare tab's state: a second table (B), from any model or corpus, compared on the
//! worker with the current table (A) entity by entity ([`pelt::analysis::compare`]). The
//! comparison is asked for while the tab is shown, again whenever the current table, B, `k` or
//! the centring change; a newer request stops the one in flight, and a result for an older
//! table is dropped. The shared entity selected is the session's selected entity, so the other
//! tabs follow a click in the list and the list follows a click elsewhere.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pelt::analysis::compare::{CompareControl, Compared};
use pelt::worker::{Reply, Task};

use super::{Changed, Command, Pending, Session};

/// Neighbours per entity unless the user says otherwise (as `pelt compare`).
pub const COMPARE_K: usize = 10;
/// The largest `k` the tab offers.
pub const COMPARE_K_MAX: usize = 200;

/// Columns the list of shared entities sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompareColumn {
    /// The entity's name (then its id).
    Entity,
    /// Jaccard@k (then the id): ascending puts the most changed first.
    #[default]
    Jaccard,
}

/// What the user asked of the Compare tab.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareCommand {
    /// Opens a file dialog for table B (the app shell does it, then sends
    /// [`CompareCommand::SetTable`]).
    OpenDialog,
    /// Compares the current table with the table of this file.
    SetTable(PathBuf),
    /// Neighbours per entity.
    SetK(usize),
    /// Removes each table's mean direction before the neighbours are found.
    SetCenter(bool),
    /// Sorts the list by this column; a second click on the same column turns the order around.
    Sort(CompareColumn),
    /// Selects shared entity `i` (an index into [`pelt::analysis::compare::Comparison::shared`]);
    /// the session's selection follows.
    Select(usize),
    /// Compares again (after an error or a cancel, or when B's file changed).
    Rerun,
    /// Stops the comparison in flight.
    Cancel,
    /// Forgets table B.
    Close,
}

/// What a comparison was asked with: any change asks again.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    table_gen: u64,
    b: PathBuf,
    k: usize,
    center: bool,
}

/// The Compare tab's state (see the module's documentation).
pub struct CompareState {
    /// Table B's file.
    pub b_path: Option<PathBuf>,
    pub k: usize,
    pub center: bool,
    pub column: CompareColumn,
    pub ascending: bool,
    /// The last error of a comparison (also in the error list).
    pub error: Option<String>,
    /// Whether the last comparison was cancelled (it is not asked again until Rerun).
    pub cancelled: bool,
    result: Option<(Key, Arc<Compared>)>,
    /// Indices into the shared entities of `result`, in the order shown.
    order: Vec<usize>,
    asked: Option<Key>,
    running: Option<(Instant, Arc<CompareControl>)>,
}

impl Default for CompareState {
    fn default() -> Self {
        CompareState {
            b_path: None,
            k: COMPARE_K,
            center: true,
            column: CompareColumn::Jaccard,
            ascending: true,
            error: None,
            cancelled: false,
            result: None,
            order: vec![],
            asked: None,
            running: None,
        }
    }
}

impl CompareState {
    /// Puts the shared entities of the result in the order of the sort column.
    fn sort(&mut self) {
        let Some((_, r)) = &self.result else {
            self.order.clear();
            return;
        };
        let c = &r.comparison;
        let mut order = match self.column {
            CompareColumn::Jaccard => c.most_changed(),
            CompareColumn::Entity => {
                let keys: Vec<(String, &str)> = c
                    .shared
                    .iter()
                    .map(|s| (s.name.to_lowercase(), s.id.as_str()))
                    .collect();
                let mut o: Vec<usize> = (0..c.shared.len()).collect();
                o.sort_by(|&x, &y| keys[x].cmp(&keys[y]));
                o
            }
        };
        if !self.ascending {
            order.reverse();
        }
        self.order = order;
    }

    /// Stops the comparison in flight, if any (its reply, should one come, is not waited for).
    fn stop(&mut self) {
        if let Some((_, control)) = self.running.take() {
            control.cancel.store(true, Ordering::Relaxed);
        }
    }
}

impl Session {
    /// The comparison of the current table with B, when there is one for this table.
    pub fn compared(&self) -> Option<&Arc<Compared>> {
        self.compare
            .result
            .as_ref()
            .filter(|(k, _)| k.table_gen == self.table_gen)
            .map(|(_, r)| r)
    }

    /// The shared entities (indices into the comparison's `shared`) in the order shown.
    pub fn compare_order(&self) -> &[usize] {
        if self.compared().is_some() {
            &self.compare.order
        } else {
            &[]
        }
    }

    /// The shared entity that is the session's selected entity, if it is one.
    pub fn compare_selected(&self) -> Option<usize> {
        let (sel, r) = (self.selected?, self.compared()?);
        r.comparison
            .shared
            .binary_search_by_key(&sel, |s| s.row_a)
            .ok()
    }

    /// Whether a comparison is in flight, since when and how far it has got (rows of both
    /// neighbour passes done, in all).
    pub fn compare_running(&self) -> Option<(Instant, (usize, usize))> {
        let waiting = self
            .jobs
            .values()
            .any(|p| matches!(p, Pending::Compare { .. }));
        match &self.compare.running {
            Some((t, c)) if waiting => Some((*t, c.progress())),
            _ => None,
        }
    }

    /// Applies one of the Compare tab's commands.
    pub(super) fn apply_compare(&mut self, c: CompareCommand) -> Changed {
        let mut changed = Changed {
            results: true,
            ..Changed::default()
        };
        let st = &mut self.compare;
        match c {
            CompareCommand::OpenDialog => return Changed::default(),
            CompareCommand::SetTable(p) => {
                st.b_path = Some(p);
                st.cancelled = false;
                st.asked = None;
            }
            CompareCommand::SetK(k) => {
                st.k = k.clamp(1, COMPARE_K_MAX);
                st.cancelled = false;
            }
            CompareCommand::SetCenter(c) => {
                st.center = c;
                st.cancelled = false;
            }
            CompareCommand::Sort(col) => {
                if st.column == col {
                    st.ascending = !st.ascending;
                } else {
                    st.column = col;
                    st.ascending = true;
                }
                st.sort();
            }
            CompareCommand::Select(i) => {
                let row = self
                    .compared()
                    .and_then(|r| r.comparison.shared.get(i))
                    .map(|s| s.row_a);
                match row {
                    Some(row) => changed.merge(self.apply(Command::Select(row))),
                    None => return Changed::default(),
                }
            }
            CompareCommand::Rerun => {
                st.cancelled = false;
                st.asked = None;
            }
            CompareCommand::Cancel => {
                if self.compare_running().is_some() {
                    self.compare.stop();
                    self.compare.cancelled = true;
                    self.jobs
                        .retain(|_, p| !matches!(p, Pending::Compare { .. }));
                    self.status = Some("Comparison cancelled".into());
                }
            }
            CompareCommand::Close => {
                st.stop();
                *st = CompareState {
                    k: st.k,
                    center: st.center,
                    column: st.column,
                    ascending: st.ascending,
                    ..CompareState::default()
                };
                self.jobs
                    .retain(|_, p| !matches!(p, Pending::Compare { .. }));
            }
        }
        changed
    }

    /// Asks for the comparison of the current table with B when it is missing or out of date
    /// (the Compare tab is shown).
    pub(super) fn compare_auto(&mut self) {
        let (Some(a), Some(b)) = (self.table.clone(), self.compare.b_path.clone()) else {
            return;
        };
        let key = Key {
            table_gen: self.table_gen,
            b,
            k: self.compare.k,
            center: self.compare.center,
        };
        if self.compare.cancelled || self.compare.asked.as_ref() == Some(&key) {
            return;
        }
        let st = &mut self.compare;
        st.stop();
        st.error = None;
        st.result = None;
        st.order.clear();
        let control = Arc::new(CompareControl::default());
        st.running = Some((Instant::now(), control.clone()));
        st.asked = Some(key.clone());
        self.jobs
            .retain(|_, p| !matches!(p, Pending::Compare { .. }));
        self.status = Some(format!(
            "Comparing the table with {}…",
            pelt::escape::path(&key.b)
        ));
        self.send(
            Pending::Compare {
                table_gen: key.table_gen,
            },
            Task::Compare {
                a,
                b: key.b,
                k: key.k,
                center: key.center,
                control,
            },
        );
    }

    /// Lands the final reply of a comparison asked of table generation `table_gen`.
    pub(super) fn on_compared(&mut self, table_gen: u64, job: &str, reply: Reply) -> Changed {
        let mut changed = Changed::default();
        let Some(key) = self.compare.asked.clone() else {
            return changed;
        };
        if table_gen != self.table_gen || key.table_gen != table_gen {
            // Asked of a table since replaced: a new comparison is asked when the tab shows.
            return changed;
        }
        self.compare.running = None;
        match reply {
            Reply::Compared(c) => {
                let cmp = &c.comparison;
                self.status = Some(format!(
                    "Compared with {}: {} shared entities, mean Jaccard@{} {:.3}",
                    pelt::escape::path(&c.b_path),
                    cmp.shared.len(),
                    cmp.k,
                    cmp.mean_jaccard
                ));
                self.compare.error = None;
                self.compare.result = Some((key, Arc::new(*c)));
                self.compare.sort();
                changed.results = true;
                changed.selection = true;
            }
            Reply::Failed { message, .. } => {
                self.compare.error = Some(message.clone());
                self.error(job, message);
                changed.results = true;
                changed.project = true;
            }
            _ => {}
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{reply, session, table};
    use super::super::{Pending, Tab};
    use super::*;
    use pelt::analysis::compare::{aligned_maps, compare_tables};
    use pelt::table::Table;
    use pelt::worker::JobId;
    use std::sync::atomic::AtomicBool;

    fn comparing(s: &Session) -> Option<(JobId, u64)> {
        s.jobs.iter().find_map(|(id, p)| match p {
            Pending::Compare { table_gen } => Some((*id, *table_gen)),
            _ => None,
        })
    }

    /// A comparison of `t` with itself, as the worker would answer it.
    fn compared(t: &Table, b: &str) -> Box<Compared> {
        let never = AtomicBool::new(false);
        let comparison = compare_tables(t, t, 2, false, &never, &mut |_, _| {})
            .unwrap()
            .unwrap();
        let maps = aligned_maps(t, t, &comparison).unwrap();
        Box::new(Compared {
            b_path: b.into(),
            b_meta: t.meta.clone(),
            comparison,
            maps,
        })
    }

    fn with_table() -> (Session, Arc<Table>) {
        let mut s = session();
        let t = table(&["alpha", "Beta", "gamma", "delta"], &[2, 1, 3, 1]);
        s.set_table(t.clone(), None);
        s.state.tab = Tab::Compare;
        (s, t)
    }

    #[test]
    fn a_comparison_is_asked_once_per_table_and_setting_and_lands_sorted() {
        let (mut s, t) = with_table();
        s.poll();
        assert!(comparing(&s).is_none(), "nothing to compare with yet");
        s.apply(Command::Compare(CompareCommand::SetTable(
            "/b.safetensors".into(),
        )));
        s.auto_requests();
        let (id, g) = comparing(&s).expect("a comparison is asked");
        assert_eq!(g, s.table_gen);
        assert!(s.compare_running().is_some());
        s.auto_requests();
        assert_eq!(comparing(&s).unwrap().0, id, "asked once");

        // The answer lands, most changed first (all 1.0 here: ties by id).
        let c = compared(&t, "/b.safetensors");
        let ids: Vec<String> = c.comparison.shared.iter().map(|e| e.id.clone()).collect();
        let changed = s.on_event(reply(&s, id, Reply::Compared(c)));
        assert!(changed.results);
        let r = s.compared().expect("the result is shown").clone();
        assert_eq!(r.comparison.shared.len(), 4);
        let shown: Vec<&str> = s
            .compare_order()
            .iter()
            .map(|&i| r.comparison.shared[i].id.as_str())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(shown, sorted);
        assert!(s.compare_running().is_none());

        // Sorting by entity: A to Z without case, then Z to A.
        s.apply(Command::Compare(CompareCommand::Sort(
            CompareColumn::Entity,
        )));
        let names = |s: &Session| -> Vec<String> {
            s.compare_order()
                .iter()
                .map(|&i| r.comparison.shared[i].name.clone())
                .collect()
        };
        assert_eq!(names(&s), ["alpha", "Beta", "delta", "gamma"]);
        s.apply(Command::Compare(CompareCommand::Sort(
            CompareColumn::Entity,
        )));
        assert_eq!(names(&s), ["gamma", "delta", "Beta", "alpha"]);

        // Selecting a shared entity selects it in the session.
        let i = s.compare_order()[0];
        let changed = s.apply(Command::Compare(CompareCommand::Select(i)));
        assert!(changed.selection);
        assert_eq!(s.selected, Some(r.comparison.shared[i].row_a));
        assert_eq!(s.compare_selected(), Some(i));

        // Another k asks again; the same k does not.
        s.apply(Command::Compare(CompareCommand::SetK(3)));
        s.auto_requests();
        let (id2, _) = comparing(&s).expect("asked again for k = 3");
        assert_ne!(id2, id);
        s.apply(Command::Compare(CompareCommand::SetK(0)));
        assert_eq!(s.compare.k, 1, "k is at least 1");
    }

    #[test]
    fn a_result_for_an_older_table_is_dropped_and_asked_again() {
        let (mut s, t) = with_table();
        s.apply(Command::Compare(CompareCommand::SetTable(
            "/b.safetensors".into(),
        )));
        s.auto_requests();
        let (old, _) = comparing(&s).unwrap();
        // The table changes before the answer comes.
        let t2 = table(&["alpha", "Beta", "gamma"], &[1, 1, 1]);
        s.set_table(t2, None);
        s.auto_requests();
        let (new, g) = comparing(&s).expect("the new table is compared");
        assert_ne!(new, old);
        assert_eq!(g, s.table_gen);
        assert!(
            !s.jobs.contains_key(&old),
            "the old job is no longer waited for"
        );
        let changed = s.on_event(reply(
            &s,
            old,
            Reply::Compared(compared(&t, "/b.safetensors")),
        ));
        assert!(!changed.results);
        assert!(
            s.compared().is_none(),
            "the old table's result is not shown"
        );
        // A result that lands and then outlives its table is not shown either.
        let t3 = s.table.clone().unwrap();
        s.on_event(reply(
            &s,
            new,
            Reply::Compared(compared(&t3, "/b.safetensors")),
        ));
        assert!(s.compared().is_some());
        s.set_table(table(&["x", "y"], &[1, 1]), None);
        assert!(s.compared().is_none());
        assert!(s.compare_order().is_empty());
        assert_eq!(s.compare_selected(), None);
    }

    #[test]
    fn a_failed_comparison_is_shown_and_not_asked_again_until_rerun() {
        let (mut s, _) = with_table();
        s.apply(Command::Compare(CompareCommand::SetTable(
            "/nonexistent/b.safetensors".into(),
        )));
        s.auto_requests();
        let (id, _) = comparing(&s).unwrap();
        s.on_event(reply(
            &s,
            id,
            Reply::Failed {
                message: "not a usable PELT table".into(),
                refused: None,
            },
        ));
        assert_eq!(s.compare.error.as_deref(), Some("not a usable PELT table"));
        assert!(s.errors.iter().any(|e| e.message.contains("not a usable")));
        s.auto_requests();
        assert!(
            comparing(&s).is_none(),
            "a failure is not asked again by itself"
        );
        s.apply(Command::Compare(CompareCommand::Rerun));
        s.auto_requests();
        assert!(comparing(&s).is_some());
        // Cancel stops it and forgets the job; Close forgets B.
        s.apply(Command::Compare(CompareCommand::Cancel));
        assert!(comparing(&s).is_none());
        assert!(s.compare.cancelled);
        s.auto_requests();
        assert!(
            comparing(&s).is_none(),
            "a cancelled comparison stays cancelled"
        );
        s.apply(Command::Compare(CompareCommand::Close));
        assert!(s.compare.b_path.is_none());
    }

    #[test]
    fn the_worker_compares_a_table_file_and_says_why_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&["alpha", "Beta", "gamma", "delta"], &[2, 1, 3, 1]);
        let path = dir.path().join("b.safetensors");
        t.save(&path).unwrap();
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a table").unwrap();
        let (mut s, _) = with_table();
        let wait = |s: &mut Session| {
            let start = Instant::now();
            while s.compare_running().is_some() {
                assert!(start.elapsed().as_secs() < 60, "no answer");
                std::thread::sleep(std::time::Duration::from_millis(10));
                s.poll();
            }
        };
        s.apply(Command::Compare(CompareCommand::SetTable(path.clone())));
        s.poll();
        wait(&mut s);
        let r = s.compared().expect("compared").clone();
        assert_eq!(r.b_path, path);
        assert_eq!(r.comparison.shared.len(), 4);
        assert!((r.comparison.mean_jaccard - 1.0).abs() < 1e-12);
        assert!(r.maps.b.disparity < 1e-9, "a table aligns with itself");
        // Not a table: the error names the file.
        s.apply(Command::Compare(CompareCommand::SetTable(junk)));
        s.poll();
        wait(&mut s);
        let e = s.compare.error.clone().expect("an error");
        assert!(
            e.contains("junk.safetensors") && e.contains("not a usable PELT table"),
            "{e}"
        );
        // No entity in common: said so.
        let mut other = (*table(&["x", "y"], &[1, 1])).clone();
        other.entity_ids = vec!["Z1".into(), "Z2".into()];
        let other_path = dir.path().join("other.safetensors");
        other.save(&other_path).unwrap();
        s.apply(Command::Compare(CompareCommand::SetTable(other_path)));
        s.poll();
        wait(&mut s);
        let e = s.compare.error.clone().expect("an error");
        assert!(e.contains("shares no entity"), "{e}");
        assert!(s.compared().is_none());
    }
}
