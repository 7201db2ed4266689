//! The parallel reader: a reading thread cuts the corpus into units of work (each format
//! says how: `FormatReader::frame`), workers turn them into sentences and run the caller's
//! `map` on them, and the calling thread gets them back in corpus order.

use anyhow::Result;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

use super::reader::Reader;
use super::{reader_of, Corpus, ReadReport, Sentence};

impl Corpus {
    /// Like [`Corpus::for_each_sentence`], on `threads` threads: a reading thread cuts the
    /// corpus into units (lines of plain text and JSON Lines files, PubTator documents,
    /// WikiExtractor lines of text, the raw JSON of FewRel examples), workers parse them,
    /// split them into sentences and run `map` on every sentence, and `f` gets each sentence
    /// with its `map` result on the calling thread in corpus order. The sentences, their order
    /// and the report are the same as [`Corpus::for_each_sentence`]'s for any thread count.
    pub fn for_each_sentence_parallel<T: Send>(
        &self,
        threads: usize,
        map: impl Fn(&Sentence) -> T + Sync,
        mut f: impl FnMut(&Sentence, T) -> Result<ControlFlow<()>>,
    ) -> Result<ReadReport> {
        if threads <= 1 {
            return self.for_each_sentence(|s| {
                let t = map(s);
                f(s, t)
            });
        }
        let stop = AtomicBool::new(false);
        let cap = self.max_line_bytes;
        let mut report = ReadReport::default();
        let outcome = std::thread::scope(|scope| -> Result<()> {
            // Units of work go to the workers; their result slots go, in corpus order, to
            // this thread, which waits on each in turn.
            let (work_tx, work_rx) =
                crossbeam_channel::bounded::<(Unit, ChunkSlot<T>)>(threads * 2);
            let (order_tx, order_rx) = crossbeam_channel::bounded(threads * 4);
            let (stop, map) = (&stop, &map);
            scope.spawn(move || frame_units(self, cap, stop, &work_tx, &order_tx));
            for _ in 0..threads {
                let work_rx = work_rx.clone();
                scope.spawn(move || {
                    for (unit, slot) in work_rx.iter() {
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let _ = slot.send(unit.run(self, cap, map));
                    }
                });
            }
            drop(work_rx);
            let result = (|| -> Result<()> {
                // A FewRel file read here from some example on; its later units are dropped.
                let mut read_here = None;
                for slot in order_rx.iter() {
                    let chunk = slot.recv().map_err(|_| {
                        anyhow::anyhow!("internal error: a corpus reading thread stopped")
                    })??;
                    if read_here == Some(chunk.fi) {
                        continue;
                    }
                    for (s, t) in chunk.sentences {
                        if f(&s, t)?.is_break() {
                            return Ok(());
                        }
                    }
                    report.absorb(chunk.report);
                    if let Some(from) = chunk.resync {
                        // Records the workers could not take (FewRel examples), from `from` on:
                        // read the way `for_each_sentence` reads them, for the same sentences
                        // and errors.
                        read_here = Some(chunk.fi);
                        let mut part = ReadReport::default();
                        let mut g = |s: Sentence| {
                            let t = map(&s);
                            f(&s, t)
                        };
                        let path = &self.files[chunk.fi];
                        let mut r = Reader::new(chunk.fi, path, &mut part, &mut g);
                        let flow = reader_of(path).read_from(&mut r, cap, from)?;
                        report.absorb(part);
                        if flow.is_break() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            drop(order_rx);
            result
        });
        outcome?;
        Ok(report)
    }
}

/// Lines (or pieces) per unit, and bytes of raw lines (or pieces) per unit.
pub(super) const UNIT_LINES: usize = 2048;
pub(super) const UNIT_BYTES: usize = 256 << 10;

/// Part of one file for a worker, cut by the reading thread: the worker parses it.
pub(super) trait Work: Send {
    /// Emits the sentences of this part through `r`. `Some(i)`: the rest of the file, from
    /// record `i` on, is to be read on the consumer's thread (with
    /// `FormatReader::read_from`).
    fn run(self: Box<Self>, r: &mut Reader<'_>, cap: usize) -> Result<Option<usize>>;
}

/// A unit of work: part of file `fi`, or the word that file `fi` is to be read on the
/// consumer's thread from record `from` on (the reading thread met something it does not
/// cut: bad JSON, an over-long example, …).
enum Unit {
    Work { fi: usize, work: Box<dyn Work> },
    Resync { fi: usize, from: usize },
}

/// Sentences of one [`Unit`] in corpus order, each with its `map` result, and the unit's
/// report; `resync` asks the consumer to read file `fi` itself from that record on.
struct Chunk<T> {
    fi: usize,
    sentences: Vec<(Sentence, T)>,
    report: ReadReport,
    resync: Option<usize>,
}

type ChunkSlot<T> = crossbeam_channel::Sender<Result<Chunk<T>>>;
type OrderSender<T> = crossbeam_channel::Sender<crossbeam_channel::Receiver<Result<Chunk<T>>>>;

impl Unit {
    fn run<T>(self, corpus: &Corpus, cap: usize, map: &dyn Fn(&Sentence) -> T) -> Result<Chunk<T>> {
        let mut report = ReadReport::default();
        let mut out = Vec::new();
        let mut push = |s: Sentence| {
            let t = map(&s);
            out.push((s, t));
            Ok(ControlFlow::Continue(()))
        };
        let (fi, resync) = match self {
            Unit::Resync { fi, from } => (fi, Some(from)),
            Unit::Work { fi, work } => {
                let mut r = Reader::new(fi, &corpus.files[fi], &mut report, &mut push);
                (fi, work.run(&mut r, cap)?)
            }
        };
        Ok(Chunk {
            fi,
            sentences: out,
            report,
            resync,
        })
    }
}

/// How far the reading thread got with a file (`FormatReader::frame`).
pub(super) enum Framed {
    /// The whole file was handed on.
    All,
    /// The consumer or the workers are gone.
    Gone,
    /// Records from this one on (0-based) were not handed on: the consumer reads them.
    From(usize),
}

/// Where the reading thread sends the units of file `fi` (at `path`).
pub(super) struct Units<'a> {
    pub(super) fi: usize,
    pub(super) path: &'a std::path::Path,
    send: &'a dyn Fn(Unit) -> bool,
}

impl Units<'_> {
    /// Hands `work` on to the workers, and its result slot to the consumer; false once they
    /// are gone.
    pub(super) fn send(&mut self, work: Box<dyn Work>) -> bool {
        (self.send)(Unit::Work { fi: self.fi, work })
    }
}

/// A record of a file that the reading thread hands to the workers whole (a PubTator
/// document, a WikiExtractor line, the raw JSON of a FewRel example).
pub(super) trait Piece: Send + 'static {
    /// About how many bytes it holds (units are cut by size too).
    fn bytes(&self) -> usize;
    /// Emits its sentences through `r`; `Some(i)`: stop, the file is to be read on the
    /// consumer's thread from record `i` on.
    fn run(self, r: &mut Reader<'_>) -> Result<Option<usize>>;
}

/// A piece, or what the reading thread skipped before the next piece.
enum Step<P> {
    Report(ReadReport),
    Piece(P),
}

impl<P: Piece> Work for Vec<Step<P>> {
    fn run(self: Box<Self>, r: &mut Reader<'_>, _cap: usize) -> Result<Option<usize>> {
        for step in *self {
            match step {
                Step::Report(part) => r.report.absorb(part),
                Step::Piece(p) => {
                    if let Some(from) = p.run(r)? {
                        return Ok(Some(from));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The pieces of one file on their way to the workers, in units of about [`UNIT_LINES`]
/// pieces or [`UNIT_BYTES`] bytes.
pub(super) struct Batch<'u, 'a, P> {
    units: &'u mut Units<'a>,
    steps: Vec<Step<P>>,
    bytes: usize,
    gone: bool,
}

impl<'u, 'a, P: Piece> Batch<'u, 'a, P> {
    pub(super) fn new(units: &'u mut Units<'a>) -> Self {
        Batch {
            units,
            steps: Vec::new(),
            bytes: 0,
            gone: false,
        }
    }

    /// Adds a piece, sending the unit when it is full; false once the workers are gone.
    pub(super) fn add(&mut self, piece: P) -> bool {
        self.bytes += piece.bytes();
        self.steps.push(Step::Piece(piece));
        if self.steps.len() >= UNIT_LINES || self.bytes >= UNIT_BYTES {
            self.bytes = 0;
            let steps = std::mem::take(&mut self.steps);
            if !self.units.send(Box::new(steps)) {
                self.gone = true;
            }
        }
        !self.gone
    }

    /// Moves what the reading thread has reported so far (warnings, counts) into the stream
    /// of pieces, where it is merged in order with the workers' results.
    pub(super) fn report(&mut self, report: &mut ReadReport) {
        if *report != ReadReport::default() {
            self.steps.push(Step::Report(std::mem::take(report)));
        }
    }

    /// Sends the pieces not sent yet; false when the workers are gone.
    pub(super) fn flush(&mut self) -> bool {
        if self.steps.is_empty() {
            return true;
        }
        let steps = std::mem::take(&mut self.steps);
        self.units.send(Box::new(steps))
    }

    /// The end of the file, read to its end or stopped by `read`'s error (sent on after the
    /// pieces before it).
    pub(super) fn finish<R>(mut self, read: Result<R>) -> Result<Framed> {
        if self.gone || !self.flush() {
            return Ok(Framed::Gone);
        }
        read.map(|_| Framed::All)
    }
}

/// The reading thread of [`Corpus::for_each_sentence_parallel`]: cuts the corpus into units,
/// sends each to the workers and its result slot to the consumer, in corpus order.
fn frame_units<T>(
    corpus: &Corpus,
    cap: usize,
    stop: &AtomicBool,
    work: &crossbeam_channel::Sender<(Unit, ChunkSlot<T>)>,
    order: &OrderSender<T>,
) {
    // False once the consumer or the workers are gone.
    let send = |unit: Unit| -> bool {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        work.send((unit, tx)).is_ok() && order.send(rx).is_ok()
    };
    let fail = |e: anyhow::Error| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = tx.send(Err(e));
        let _ = order.send(rx);
    };
    for (fi, path) in corpus.files.iter().enumerate() {
        let mut units = Units {
            fi,
            path,
            send: &send,
        };
        match reader_of(path).frame(&mut units, cap) {
            Ok(Framed::All) => {}
            Ok(Framed::Gone) => return,
            Ok(Framed::From(from)) => {
                if !send(Unit::Resync { fi, from }) {
                    return;
                }
            }
            Err(e) => return fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sentence (with its map result) and the report of a parallel read.
    fn read_all(c: &Corpus, threads: usize) -> (Vec<(Sentence, usize)>, ReadReport) {
        let mut got = Vec::new();
        let report = c
            .for_each_sentence_parallel(
                threads,
                |s| s.text.len() + s.links.len(),
                |s, n| {
                    got.push((s.clone(), n));
                    Ok(ControlFlow::Continue(()))
                },
            )
            .unwrap();
        (got, report)
    }

    #[test]
    fn parallel_reading_gives_the_sequential_sentences_and_report() {
        let d = tempfile::tempdir().unwrap();
        // Several units of lines, with bad lines spread over them (more than 20 warnings, so
        // which ones are kept depends on their order), and files of other formats between.
        let mut jsonl = String::new();
        for i in 0..3 * UNIT_LINES + 17 {
            match i % 97 {
                0 => jsonl.push_str("{not json\n"),
                1 => jsonl.push_str(&format!("{}\n", "x".repeat(300))), // over the cap below
                2 => jsonl.push_str("{\"text\": \"bad link.\", \"links\": [{\"start\": 9, \"end\": 99, \"id\": \"Q\"}]}\n"),
                _ => jsonl.push_str(&format!(
                    "{{\"text\": \"Line {i} names Paris. And a second sentence {i}.\", \"links\": [{{\"start\": 14, \"end\": 19, \"id\": \"Q90\"}}]}}\n"
                )),
            }
        }
        std::fs::write(d.path().join("a.jsonl"), &jsonl).unwrap();
        let text: String = (0..UNIT_LINES + 5)
            .map(|i| format!("Plain line {i}. Two sentences here.\n"))
            .collect();
        std::fs::write(d.path().join("b.txt"), text).unwrap();
        std::fs::write(
            d.path().join("c.wiki"),
            "<doc id=\"1\" title=\"T\">\nT\n<a href=\"Paris\">Paris</a> is big.\n</doc>\nstray\n",
        )
        .unwrap();
        std::fs::write(d.path().join("d.txt"), b"Last file. Its end.\n\xff\xfe\n").unwrap();
        let mut c = Corpus::open(&[d.path().to_path_buf()]).unwrap();
        c.max_line_bytes = 200;
        let mut want = Vec::new();
        let want_report = c
            .for_each_sentence(|s| {
                want.push((s.clone(), s.text.len() + s.links.len()));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        assert!(want.len() > 7 * UNIT_LINES, "{}", want.len());
        assert!(want_report.skipped_lines > 20 && want_report.skipped_links > 20);
        assert_eq!(want_report.warnings.len(), 20);
        for threads in [1, 2, 3, 8] {
            let (got, report) = read_all(&c, threads);
            assert!(got == want, "{threads} threads: other sentences or order");
            assert_eq!(report, want_report, "{threads} threads");
        }
    }

    /// Every sentence and the report (or the error) of a sequential read.
    fn read_seq(c: &Corpus) -> (Vec<(Sentence, usize)>, Result<ReadReport, String>) {
        let mut got = Vec::new();
        let report = c.for_each_sentence(|s| {
            got.push((s.clone(), s.text.len() + s.links.len()));
            Ok(ControlFlow::Continue(()))
        });
        (got, report.map_err(|e| format!("{e:#}")))
    }

    /// The same for a parallel read.
    fn read_par(
        c: &Corpus,
        threads: usize,
    ) -> (Vec<(Sentence, usize)>, Result<ReadReport, String>) {
        let mut got = Vec::new();
        let report = c.for_each_sentence_parallel(
            threads,
            |s| s.text.len() + s.links.len(),
            |s, n| {
                got.push((s.clone(), n));
                Ok(ControlFlow::Continue(()))
            },
        );
        (got, report.map_err(|e| format!("{e:#}")))
    }

    #[test]
    fn linked_formats_read_in_parallel_give_the_sequential_sentences_and_report() {
        let d = tempfile::tempdir().unwrap();
        let n = 2 * UNIT_LINES + 300;
        // PubTator: documents with and without blank lines between them, and bad lines of
        // every kind spread over several units.
        let mut pt = String::new();
        for i in 0..n {
            let title = format!("Aspirin {i} helps.");
            pt.push_str(&format!(
                "{i}|t|{title}\n{i}|a|Then aspirin {i} again. More text.\n"
            ));
            pt.push_str(&format!("{i}\t0\t7\tAspirin\tChemical\tD001241\n"));
            match i % 89 {
                0 => pt.push_str(&format!("{i}\t0\t7\tAspirinX\tChemical\tD1\n")),
                1 => pt.push_str(&format!("{i}\t5\t900\tx\tChemical\tD1\n")),
                2 => pt.push_str("77777\t0\t3\tAsp\tChemical\tD1\n"),
                3 => pt.push_str("garbage line\n"),
                4 => pt.push_str(&format!("{i}|t|second title\n")),
                5 => pt.push_str(&format!("{i}\tCID\tD1\tD2\n")),
                6 => pt.push_str(&format!("{}\n", "y".repeat(400))),
                7 => pt.push_str(&format!("{i}\tx\t7\tAspirin\tChemical\tD1\n")),
                _ => {}
            }
            if i % 3 != 0 {
                pt.push('\n');
            }
        }
        let mut pt = pt.into_bytes();
        pt.extend(b"\xff\xfe\n9|a|only an abstract.\n");
        std::fs::write(d.path().join("a.pubtator"), pt).unwrap();
        // WikiExtractor, with text outside documents and bad anchors.
        let mut wiki = String::new();
        for i in 0..n {
            if i % 40 == 0 {
                wiki.push_str(&format!("<doc id=\"{i}\" title=\"Doc {i}\">\nDoc {i}\n"));
            }
            match i % 97 {
                0 => wiki.push_str("An <a>bare</a> anchor. Second one.\n"),
                1 => wiki.push_str("Open <a href=\"x\">never closed\n"),
                _ => wiki.push_str(&format!(
                    "Line {i} on <a href=\"paris\">Paris</a>. And <a href=\"Lyon%20city\">Lyon</a> too.\n"
                )),
            }
            if i % 40 == 39 {
                wiki.push_str("</doc>\n");
                if i % 400 == 39 {
                    wiki.push_str("stray text\n");
                }
            }
        }
        std::fs::write(d.path().join("b.wiki"), wiki).unwrap();
        // FewRel, as a list and as an object of relation → list.
        let example = |i: usize| match i % 101 {
            0 => serde_json::json!({"tokens": []}),
            1 => serde_json::json!({"tokens": ["A", "b"], "h": ["a", "Q1", [[0, 9]]]}),
            2 => {
                serde_json::json!({"tokens": ["A", "b"], "h": ["a", "Q1", [[0]]], "t": ["ab", "Q2", [[0, 1]]]})
            }
            3 => serde_json::json!(7),
            _ => serde_json::json!({"tokens": ["Ünïcode", "Paris", format!("{i}"), "."],
                "h": ["paris", "Q90", [[1]]], "t": ["n", format!("Q{i}"), [[2]]]}),
        };
        let list: Vec<_> = (0..n).map(example).collect();
        std::fs::write(
            d.path().join("c.json"),
            serde_json::to_string_pretty(&list).unwrap(),
        )
        .unwrap();
        let object = serde_json::json!({
            "P1": (0..n / 2).map(example).collect::<Vec<_>>(),
            "Pé \"2\"": [],
            "P3": (n / 2..n).map(example).collect::<Vec<_>>(),
        });
        std::fs::write(
            d.path().join("d.json"),
            serde_json::to_string(&object).unwrap(),
        )
        .unwrap();
        std::fs::write(d.path().join("e.json"), "  [ ]  ").unwrap();
        let mut c = Corpus::open(&[d.path().to_path_buf()]).unwrap();
        c.max_line_bytes = 300;
        let (want, want_report) = read_seq(&c);
        let want_report = want_report.unwrap();
        assert!(want.len() > 5 * n, "{}", want.len());
        assert!(want_report.skipped_lines > 20 && want_report.skipped_links > 20);
        for threads in [2, 3, 8] {
            let (got, report) = read_par(&c, threads);
            assert!(got == want, "{threads} threads: other sentences or order");
            assert_eq!(report.unwrap(), want_report, "{threads} threads");
        }
        // Each file alone, so that the warnings kept are each format's own.
        for f in &c.files {
            let mut one = Corpus::open(std::slice::from_ref(f)).unwrap();
            one.max_line_bytes = 300;
            let (want, want_report) = read_seq(&one);
            let want_report = want_report.unwrap();
            assert!(
                want_report.warnings.len() == 20 || f.ends_with("e.json"),
                "{f:?}"
            );
            let (got, report) = read_par(&one, 2);
            assert!(got == want, "{f:?}: other sentences or order");
            assert_eq!(report.unwrap(), want_report, "{f:?}");
        }
    }

    #[test]
    fn fewrel_files_the_workers_cannot_cut_read_as_they_do_sequentially() {
        let d = tempfile::tempdir().unwrap();
        let good =
            |i: usize| format!(r#"{{"tokens": ["Paris", "{i}"], "h": ["p", "Q90", [[0]]]}}"#);
        let many = |from: usize, to: usize| (from..to).map(good).collect::<Vec<_>>().join(",\n");
        let n = UNIT_LINES + 50;
        let after = d.path().join("after.txt");
        std::fs::write(&after, "After. The end.\n").unwrap();
        let cases: Vec<(&str, String)> = vec![
            (
                "bad-inside.json",
                format!(
                    "[{}, {{\"tokens\": [tru]}}, {}]",
                    many(0, n),
                    many(n, n + 9)
                ),
            ),
            (
                "bad-between.json",
                format!("[{} {}]", many(0, n), many(n, n + 9)),
            ),
            ("trailing-comma.json", format!("[{},]", many(0, n))),
            ("trailing-data.json", format!("[{}] x", many(0, n))),
            ("unclosed.json", format!("[{}", many(0, n))),
            (
                "long.json",
                format!(
                    "[{}, {{\"tokens\": [\"{}\"]}}, {}]",
                    many(0, n),
                    "z".repeat(5000),
                    many(n, n + 3)
                ),
            ),
            (
                "deep.json",
                format!(
                    "[{}, {}1{}, {}]",
                    many(0, 10),
                    "[".repeat(140),
                    "]".repeat(140),
                    many(10, 20)
                ),
            ),
            (
                "bad-key.json",
                format!("{{\"P1\": [{}], \"\\q\": []}}", many(0, n)),
            ),
            (
                "not-a-list.json",
                format!("{{\"P1\": [{}], \"P2\": 3}}", many(0, n)),
            ),
            ("scalar.json", "42".to_string()),
            ("empty.json", String::new()),
            (
                "bad-utf8.json",
                format!("[{}, {{\"tokens\": [\"Q\"]}}]", many(0, 5)),
            ),
        ];
        for (name, text) in cases {
            let p = d.path().join(name);
            let mut bytes = text.into_bytes();
            if name == "bad-utf8.json" {
                let at = bytes.len() - 5;
                bytes[at] = 0xff;
            }
            std::fs::write(&p, &bytes).unwrap();
            let mut c = Corpus::open(&[p, after.clone()]).unwrap();
            c.max_line_bytes = 4096;
            let (want, want_report) = read_seq(&c);
            for threads in [2, 5] {
                let (got, report) = read_par(&c, threads);
                assert!(
                    got == want,
                    "{name}, {threads} threads: other sentences ({} vs {})",
                    got.len(),
                    want.len()
                );
                assert_eq!(report, want_report, "{name}, {threads} threads");
            }
        }
    }

    #[test]
    fn parallel_reading_stops_when_asked_and_reports_errors() {
        let d = tempfile::tempdir().unwrap();
        let text: String = (0..5 * UNIT_LINES)
            .map(|i| format!("Line {i}.\n"))
            .collect();
        std::fs::write(d.path().join("a.txt"), text).unwrap();
        let c = Corpus::open(&[d.path().join("a.txt")]).unwrap();
        let mut seen = 0;
        c.for_each_sentence_parallel(
            3,
            |_| (),
            |s, ()| {
                assert_eq!(s.line, seen + 1, "in order");
                seen += 1;
                Ok(if seen == UNIT_LINES + 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        )
        .unwrap();
        assert_eq!(seen, UNIT_LINES + 3);
        let e = c
            .for_each_sentence_parallel(
                2,
                |_| (),
                |s, ()| {
                    if s.line == 3 * UNIT_LINES {
                        anyhow::bail!("stop at {}", s.line);
                    }
                    Ok(ControlFlow::Continue(()))
                },
            )
            .unwrap_err();
        assert!(
            format!("{e}").contains(&format!("stop at {}", 3 * UNIT_LINES)),
            "{e}"
        );
    }
}
