//! The entity list's rows, searched and sorted away from the frame. [`RowIndex`] holds, for one
//! set of entity rows (a table or an entity list), each row's lowercased search text and the
//! row orders of the sort keys; [`RowOrders`] keeps one on a thread of its own and answers
//! [`RowQuery`]s there, so a search or a sort over a million entities never stalls a frame.
//! Nothing here knows the GUI: the thread calls the `wake` callback it was given after each
//! answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use pelt::entities::EntityList;
use pelt::table::Table;

use super::session::SortKey;

/// Which rows the entity list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    All,
    Found,
    NotFound,
}

/// The entity rows searched and sorted: a table's, or (before a table exists) an entity
/// list's.
#[derive(Clone)]
pub enum RowSource {
    Table(Arc<Table>),
    List(Arc<EntityList>),
}

impl RowSource {
    pub fn len(&self) -> usize {
        match self {
            RowSource::Table(t) => t.len(),
            RowSource::List(l) => l.len(),
        }
    }

    fn name(&self, i: usize) -> &str {
        match self {
            RowSource::Table(t) => &t.entity_names[i],
            RowSource::List(l) => &l.entities[i].name,
        }
    }

    fn id(&self, i: usize) -> &str {
        match self {
            RowSource::Table(t) => &t.entity_ids[i],
            RowSource::List(l) => &l.entities[i].id,
        }
    }

    fn aliases(&self, i: usize) -> &[String] {
        match self {
            RowSource::Table(t) => t.entity_aliases.get(i).map(Vec::as_slice).unwrap_or(&[]),
            RowSource::List(l) => &l.entities[i].aliases,
        }
    }

    /// Contexts used for row `i`'s vector (none before a table exists).
    fn contexts(&self, i: usize) -> Option<i64> {
        match self {
            RowSource::Table(t) => Some(t.counts[i]),
            RowSource::List(_) => None,
        }
    }

    fn mentions(&self, i: usize) -> Option<u64> {
        match self {
            RowSource::Table(t) => Some(t.found.get(i).copied().unwrap_or(0)),
            RowSource::List(_) => None,
        }
    }
}

/// What the list shows: the rows of generation `rows_gen` matching `filter` (name, id or
/// alias, without case) and `show`, in the order of `sort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowQuery {
    pub rows_gen: u64,
    pub filter: String,
    pub show: Show,
    pub sort: SortKey,
    pub ascending: bool,
    /// Only these rows (sorted), when given: a set made on the map.
    pub set: Option<Arc<Vec<usize>>>,
}

impl RowQuery {
    /// Whether the answer is the rows in their own order (nothing to search or sort).
    pub fn is_identity(&self) -> bool {
        self.filter.trim().is_empty()
            && self.show == Show::All
            && self.sort == SortKey::Row
            && self.set.is_none()
    }
}

/// Separates the name, id and aliases of a row, and the rows, in [`RowIndex`]'s text; a search
/// containing it matches nothing (a name never holds it).
const SEP: char = '\u{1}';

/// The sort keys whose orders are computed, in the order they are prepared ahead of use.
const SORTED: [SortKey; 5] = [
    SortKey::Name,
    SortKey::Id,
    SortKey::Contexts,
    SortKey::Mentions,
    SortKey::Status,
];

/// One set of entity rows made quick to search and sort: every row's name, id and aliases
/// lowercased once, into one buffer, and each sort key's row order computed once.
pub struct RowIndex {
    source: RowSource,
    /// Row `i` is `text[starts[i]..starts[i + 1]]`: its name, id and aliases, lowercased, each
    /// followed by [`SEP`].
    text: String,
    starts: Vec<usize>,
    /// The byte length of row `i`'s lowercased name (its first field).
    name_len: Vec<u32>,
    /// The order of each of [`SORTED`], once computed.
    orders: [Option<Vec<u32>>; 5],
}

fn status_rank(contexts: Option<i64>) -> u8 {
    match contexts {
        None => 2,
        Some(0) => 0,
        Some(_) => 1,
    }
}

impl RowIndex {
    /// Lowercases every row's text (the orders are computed when first needed, or by
    /// [`RowIndex::prepare`]).
    pub fn new(source: RowSource) -> RowIndex {
        let n = source.len();
        let mut text = String::new();
        let mut starts = Vec::with_capacity(n + 1);
        let mut name_len = Vec::with_capacity(n);
        for i in 0..n {
            starts.push(text.len());
            let name = source.name(i).to_lowercase();
            name_len.push(name.len() as u32);
            text.push_str(&name);
            text.push(SEP);
            for field in
                std::iter::once(source.id(i)).chain(source.aliases(i).iter().map(String::as_str))
            {
                text.push_str(&field.to_lowercase());
                text.push(SEP);
            }
        }
        starts.push(text.len());
        RowIndex {
            source,
            text,
            starts,
            name_len,
            orders: Default::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.source.len()
    }

    fn lower_name(&self, i: usize) -> &str {
        let s = self.starts[i];
        &self.text[s..s + self.name_len[i] as usize]
    }

    fn slot(sort: SortKey) -> Option<usize> {
        SORTED.iter().position(|&k| k == sort)
    }

    /// Whether the order of `sort` is ready (the row order always is).
    pub fn is_prepared(&self, sort: SortKey) -> bool {
        Self::slot(sort).is_none_or(|s| self.orders[s].is_some())
    }

    /// The first sort key whose order is not computed yet.
    pub fn next_unprepared(&self) -> Option<SortKey> {
        SORTED.into_iter().find(|&k| !self.is_prepared(k))
    }

    /// Computes the order of `sort` unless it is known: ascending by the key, ties by row.
    pub fn prepare(&mut self, sort: SortKey) {
        let Some(slot) = Self::slot(sort) else {
            return;
        };
        if self.orders[slot].is_some() {
            return;
        }
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        let src = &self.source;
        match sort {
            SortKey::Row => {}
            SortKey::Name => order.sort_unstable_by(|&a, &b| {
                self.lower_name(a as usize)
                    .cmp(self.lower_name(b as usize))
                    .then(a.cmp(&b))
            }),
            SortKey::Id => order.sort_unstable_by(|&a, &b| {
                src.id(a as usize).cmp(src.id(b as usize)).then(a.cmp(&b))
            }),
            SortKey::Contexts => order.sort_unstable_by_key(|&i| (src.contexts(i as usize), i)),
            SortKey::Mentions => order.sort_unstable_by_key(|&i| (src.mentions(i as usize), i)),
            SortKey::Status => {
                order.sort_unstable_by_key(|&i| (status_rank(src.contexts(i as usize)), i))
            }
        }
        self.orders[slot] = Some(order);
    }

    /// Which rows contain `f` (already lowercased) in their name, id or an alias: one pass
    /// over the text, each match put down to its row.
    fn matching(&self, f: &str) -> Vec<bool> {
        let mut hit = vec![false; self.len()];
        if f.contains(SEP) {
            return hit;
        }
        let mut row = 0;
        for (at, _) in self.text.match_indices(f) {
            while self.starts[row + 1] <= at {
                row += 1;
            }
            hit[row] = true;
        }
        hit
    }

    /// The rows `q` asks for (its `rows_gen` is not looked at).
    pub fn rows(&mut self, q: &RowQuery) -> Vec<usize> {
        self.prepare(q.sort);
        let f = q.filter.trim().to_lowercase();
        let hit = (!f.is_empty()).then(|| self.matching(&f));
        let src = &self.source;
        let keep = |i: usize| {
            hit.as_ref().is_none_or(|h| h[i])
                && q.set.as_ref().is_none_or(|s| s.binary_search(&i).is_ok())
                && match q.show {
                    Show::All => true,
                    Show::Found => src.contexts(i).is_some_and(|c| c > 0),
                    Show::NotFound => src.contexts(i) == Some(0),
                }
        };
        let mut rows: Vec<usize> = match Self::slot(q.sort) {
            Some(s) => self.orders[s]
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| keep(i))
                .collect(),
            None => (0..self.len()).filter(|&i| keep(i)).collect(),
        };
        if !q.ascending {
            rows.reverse();
        }
        rows
    }
}

/// The rows answering the query sent as `id`.
#[derive(Debug)]
pub struct RowsAnswer {
    pub id: u64,
    pub query: RowQuery,
    pub rows: Vec<usize>,
}

enum Msg {
    Source {
        rows_gen: u64,
        source: Option<RowSource>,
    },
    Query {
        id: u64,
        query: RowQuery,
    },
}

/// A thread that holds the [`RowIndex`] of the current entity rows and answers queries on
/// them, the newest first: a query overtaken by another before it was answered is dropped,
/// as is one asked of other rows than the thread holds. While idle it computes the orders not
/// asked for yet, so a later click on a column header is answered at once.
pub struct RowOrders {
    tx: Sender<Msg>,
    rx: Receiver<RowsAnswer>,
    next_id: AtomicU64,
}

/// Sorting a million names takes a core for a second: on a machine of few cores the frame
/// should win it, so this thread runs at a lower priority (Linux: nice +10 for this thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id changes only its scheduling priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

impl RowOrders {
    /// Starts the thread; `wake` is called after each answer.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> RowOrders {
        let (tx, msgs) = crossbeam_channel::unbounded::<Msg>();
        let (answers, rx) = crossbeam_channel::unbounded::<RowsAnswer>();
        std::thread::Builder::new()
            .name("pelt-rows".into())
            .spawn(move || {
                lower_priority();
                serve(msgs, answers, wake)
            })
            .expect("cannot start the entity rows thread");
        RowOrders {
            tx,
            rx,
            next_id: AtomicU64::new(1),
        }
    }

    /// The rows of generation `rows_gen` from now on (`None`: no rows).
    pub fn set_source(&self, rows_gen: u64, source: Option<RowSource>) {
        let _ = self.tx.send(Msg::Source { rows_gen, source });
    }

    /// Asks for the rows of `query`; the answer carries the id returned.
    pub fn ask(&self, query: RowQuery) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Query { id, query });
        id
    }

    /// The answers that have arrived, without waiting.
    pub fn answers(&self) -> Vec<RowsAnswer> {
        self.rx.try_iter().collect()
    }

    /// Waits for the next answer.
    #[cfg(test)]
    pub fn recv_timeout(&self, t: std::time::Duration) -> Option<RowsAnswer> {
        self.rx.recv_timeout(t).ok()
    }
}

fn serve(msgs: Receiver<Msg>, answers: Sender<RowsAnswer>, wake: impl Fn()) {
    let mut index: Option<(u64, RowIndex)> = None;
    let mut pending: Option<(u64, RowQuery)> = None;
    loop {
        let idle_work = index.as_ref().and_then(|(_, x)| x.next_unprepared());
        let msg = if pending.is_some() || idle_work.is_some() {
            match msgs.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match msgs.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        if let Some(m) = msg {
            for m in std::iter::once(m).chain(msgs.try_iter()) {
                match m {
                    Msg::Source { rows_gen, source } => {
                        index = source.map(|s| (rows_gen, RowIndex::new(s)));
                    }
                    Msg::Query { id, query } => pending = Some((id, query)),
                }
            }
            continue;
        }
        if let Some((id, query)) = pending.take() {
            if let Some((_, x)) = index.as_mut().filter(|(g, _)| *g == query.rows_gen) {
                let rows = x.rows(&query);
                if answers.send(RowsAnswer { id, query, rows }).is_err() {
                    return;
                }
                wake();
            }
            continue;
        }
        if let (Some((_, x)), Some(k)) = (index.as_mut(), idle_work) {
            x.prepare(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pelt::entities::Entity;
    use std::time::Duration;

    fn list(rows: &[(&str, &str, &[&str])]) -> RowSource {
        RowSource::List(Arc::new(EntityList {
            entities: rows
                .iter()
                .map(|(id, name, aliases)| Entity {
                    id: id.to_string(),
                    name: name.to_string(),
                    aliases: aliases.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
        }))
    }

    fn q(filter: &str, sort: SortKey, ascending: bool) -> RowQuery {
        RowQuery {
            rows_gen: 1,
            filter: filter.into(),
            show: Show::All,
            sort,
            ascending,
            set: None,
        }
    }

    fn sample() -> RowSource {
        list(&[
            ("Q3", "beta Kinase", &[]),
            ("Q1", "Alpha", &["ÉTOILE"]),
            ("Q20", "alpha", &[]),
            ("Q2", "gamma", &["p53"]),
        ])
    }

    #[test]
    fn searches_name_id_and_aliases_without_case() {
        let mut x = RowIndex::new(sample());
        assert_eq!(x.rows(&q("KINASE", SortKey::Row, true)), vec![0]);
        assert_eq!(x.rows(&q(" q2", SortKey::Row, true)), vec![2, 3]);
        assert_eq!(x.rows(&q("étoile", SortKey::Row, true)), vec![1]);
        assert_eq!(x.rows(&q("P53", SortKey::Row, true)), vec![3]);
        // A match never runs from one field (or row) into the next.
        assert!(x.rows(&q("kinaseq3", SortKey::Row, true)).is_empty());
        assert!(x.rows(&q("a\u{1}q", SortKey::Row, true)).is_empty());
        assert_eq!(x.rows(&q("", SortKey::Row, false)), vec![3, 2, 1, 0]);
    }

    #[test]
    fn sorts_by_lowercased_name_then_row_and_by_id() {
        let mut x = RowIndex::new(sample());
        assert_eq!(x.rows(&q("", SortKey::Name, true)), vec![1, 2, 0, 3]);
        assert_eq!(x.rows(&q("", SortKey::Name, false)), vec![3, 0, 2, 1]);
        assert_eq!(x.rows(&q("", SortKey::Id, true)), vec![1, 3, 2, 0]);
        assert_eq!(x.rows(&q("alpha", SortKey::Name, true)), vec![1, 2]);
        assert_eq!(x.next_unprepared(), Some(SortKey::Contexts));
    }

    #[test]
    fn a_set_from_the_map_limits_the_rows_in_any_order() {
        let mut x = RowIndex::new(sample());
        let set = |rows: &[usize], filter: &str, sort: SortKey| RowQuery {
            set: Some(Arc::new(rows.to_vec())),
            ..q(filter, sort, true)
        };
        assert!(!set(&[0], "", SortKey::Row).is_identity());
        assert_eq!(x.rows(&set(&[0, 2], "", SortKey::Row)), vec![0, 2]);
        assert_eq!(x.rows(&set(&[0, 2, 3], "", SortKey::Name)), vec![2, 0, 3]);
        assert_eq!(x.rows(&set(&[0, 2, 3], "alpha", SortKey::Name)), vec![2]);
        assert!(x.rows(&set(&[], "", SortKey::Row)).is_empty());
    }

    #[test]
    fn the_thread_answers_the_newest_query_of_the_rows_it_holds() {
        let orders = RowOrders::spawn(|| {});
        orders.set_source(1, Some(sample()));
        let id = orders.ask(q("alpha", SortKey::Name, false));
        let a = orders
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer");
        assert_eq!((a.id, a.rows), (id, vec![2, 1]));
        // A query of other rows than those held is not answered.
        orders.ask(RowQuery {
            rows_gen: 7,
            ..q("", SortKey::Id, true)
        });
        assert!(orders.recv_timeout(Duration::from_millis(300)).is_none());
        let fresh = orders.ask(q("", SortKey::Id, true));
        let a = orders
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer");
        assert_eq!((a.id, a.rows), (fresh, vec![1, 3, 2, 0]));
        orders.set_source(2, None);
        orders.ask(RowQuery {
            rows_gen: 2,
            ..q("", SortKey::Id, true)
        });
        assert!(orders.recv_timeout(Duration::from_millis(300)).is_none());
    }
}
