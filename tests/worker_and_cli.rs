//! The worker without any UI, the rewrite, and the `pelt` command line end to end.

mod common;
use common::*;

use pelt::build::BuildReport;
use pelt::model::{DeviceChoice, DtypeChoice};
use pelt::progress::Phase;
use pelt::project::{bundled_demo, Project};
use pelt::table::Table;
use pelt::worker::{Event, JobId, Reply, Task, Worker, WorkerOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits for the replies to job `id` until `f` takes one; every event must name a job sent.
fn wait_for<T>(w: &Worker, id: JobId, what: &str, mut f: impl FnMut(Reply) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(Event {
            id: got,
            generation,
            job,
            reply,
        }) = w.recv_timeout(Duration::from_millis(200))
        {
            assert_eq!(generation, 7, "events carry the generation of their job");
            assert!(got <= id, "an event for job {got}, not sent yet");
            if got < id {
                // An earlier job's reply: there is at most one final one, already seen.
                assert!(
                    !reply.is_final(),
                    "a second final reply to job {got} ({job})"
                );
                continue;
            }
            if let Reply::Failed { message, .. } = &reply {
                if what != "error" {
                    panic!("{job}: {message}");
                }
            }
            let last = reply.is_final();
            if let Some(t) = f(reply) {
                assert!(last, "the awaited reply is the job's final one");
                return t;
            }
            assert!(!last, "job {id} ended without the awaited reply ({what})");
        }
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn worker_builds_inspects_previews_and_survives_errors() {
    let wakes = Arc::new(AtomicUsize::new(0));
    let w2 = wakes.clone();
    let worker = Worker::spawn(move || {
        w2.fetch_add(1, Ordering::SeqCst);
    });
    let dir = tempfile::tempdir().unwrap();
    let mut project = Project::load(&bundled_demo()).unwrap();
    project.table = Some(dir.path().join("demo.safetensors"));
    project.options.k = 16;
    let id = worker.send(
        7,
        Task::Build {
            project: Box::new(project.clone()),
            resume: false,
            replace: pelt::outpath::Replace::OwnOnly,
        },
    );
    let mut progress = 0;
    let table = wait_for(&worker, id, "build", |e| match e {
        Reply::Progress(_) => {
            progress += 1;
            None
        }
        Reply::Built {
            table,
            saved_to,
            report,
        } => {
            assert_eq!(
                saved_to.as_deref(),
                Some(dir.path().join("demo.safetensors").as_path())
            );
            assert!(report.contexts > 1000);
            Some(table)
        }
        _ => None,
    });
    assert!(progress > 0, "progress events arrive");
    assert!(
        wakes.load(Ordering::SeqCst) > progress,
        "the wake callback runs after events"
    );
    let e = table.index_of("apoptosis").unwrap();

    let id = worker.send(
        7,
        Task::Inspect {
            table: table.clone(),
            entity: e,
            top_k: 5,
            limit: 50,
            norms: vec![0.0, 0.5, 7.0],
        },
    );
    let ins = wait_for(&worker, id, "inspection", |e| {
        if let Reply::Inspected(i) = e {
            Some(i)
        } else {
            None
        }
    });
    assert_eq!(ins.insights.len(), table.counts[e] as usize);
    assert!(ins
        .insights
        .iter()
        .all(|c| c.predictions.len() == 5 && c.cosine > 0.0));
    assert_eq!(ins.loss_curve.len(), 3);
    eprintln!("loss curve {:?}", ins.loss_curve);
    assert!(ins
        .loss_curve
        .iter()
        .all(|(_, l)| l.is_finite() && *l >= 0.0));
    assert!(
        ins.loss_curve[0].1 > ins.loss_curve[2].1,
        "norm 0 fits worse than 7"
    );

    let id = worker.send(
        7,
        Task::Neighbours {
            table: table.clone(),
            entity: e,
            k: 5,
            center: true,
            norm: 7.0,
        },
    );
    let nb = wait_for(&worker, id, "neighbours", |e| {
        if let Reply::Neighbours(n) = e {
            Some(n)
        } else {
            None
        }
    });
    assert_eq!(nb.entities.len(), 5);
    assert!(nb.entities.iter().all(|&(j, _)| j != e));
    assert_eq!(nb.vocab.len(), 5);

    let text = "treatment with apoptosis induced [MASK] in the cells .";
    let preview = |disabled: Vec<(usize, usize)>| {
        let id = worker.send(
            7,
            Task::Preview {
                table: table.clone(),
                text: text.into(),
                disabled,
                norm_a: 1.0,
                norm_b: 10.0,
                top_k: 5,
            },
        );
        wait_for(&worker, id, "preview", |e| {
            if let Reply::Previewed(p) = e {
                Some(p)
            } else {
                None
            }
        })
    };
    let pv = preview(vec![]);
    assert!(
        pv.rewritten.contains("apoptosis ( [[apoptosis]] )"),
        "{}",
        pv.rewritten
    );
    // `apoptosis` and `cells` are both entities of the sample.
    let cells = table.index_of("cells").unwrap();
    let found: Vec<(usize, bool)> = pv.mentions.iter().map(|m| (m.entity, m.plugged)).collect();
    assert_eq!(found, vec![(e, true), (cells, true)]);
    assert_eq!(
        pv.tokens.iter().filter(|t| t.entity == Some(e)).count(),
        1,
        "{:?}",
        pv.tokens
    );
    assert_eq!(pv.tokens.iter().filter(|t| t.entity.is_some()).count(), 2);
    assert_eq!(pv.masks.len(), 1);
    assert_ne!(
        pv.masks[0].with_a, pv.masks[0].with_b,
        "norm changes the predictions"
    );
    // The same sentence with the mention switched off is not rewritten.
    let pv2 = preview(vec![(15, 24)]);
    assert_eq!(
        pv2.rewritten,
        "treatment with apoptosis induced [MASK] in the cells ( [[cells]] ) ."
    );
    assert_eq!(
        pv2.mentions.iter().map(|m| m.plugged).collect::<Vec<_>>(),
        vec![false, true]
    );
    let pv2 = preview(vec![(15, 24), (47, 52)]);
    assert_eq!(pv2.rewritten, text);
    assert_eq!(pv2.masks[0].without, pv2.masks[0].with_a);

    // Errors become events and the worker keeps working.
    let id = worker.send(
        7,
        Task::OpenTable {
            path: dir.path().join("missing.safetensors"),
            corpus: vec![],
        },
    );
    let msg = wait_for(&worker, id, "error", |e| {
        if let Reply::Failed { message, .. } = e {
            Some(message)
        } else {
            None
        }
    });
    assert!(msg.contains("missing.safetensors"), "{msg}");
    let id = worker.send(
        7,
        Task::OpenTable {
            path: dir.path().join("demo.safetensors"),
            corpus: project.corpus.clone(),
        },
    );
    let reopened = wait_for(&worker, id, "open", |e| {
        if let Reply::TableOpened { table, .. } = e {
            Some(table)
        } else {
            None
        }
    });
    assert_eq!(
        *reopened, *table,
        "the saved table reopens with vectors and contexts"
    );
}

/// Builds `project` on `worker` (job generation 7) to its end.
fn built_table(worker: &Worker, project: &Project, resume: bool) -> (Arc<Table>, BuildReport) {
    let id = worker.send(
        7,
        Task::Build {
            project: Box::new(project.clone()),
            resume,
            replace: pelt::outpath::Replace::OwnOnly,
        },
    );
    wait_for(worker, id, "build", |e| match e {
        Reply::Built { table, report, .. } => Some((table, *report)),
        _ => None,
    })
}

#[test]
fn worker_on_the_generic_path_builds_cancels_and_resumes_to_the_same_table() {
    // The worker as it runs on a GPU: candle's generic tensor operations on padded batches
    // cut by tokens (`device = auto` is the CPU here; the fused CPU kernels are off).
    let generic = Worker::spawn_with(WorkerOptions { cpu_kernels: false }, || {});
    let dir = tempfile::tempdir().unwrap();
    let mut project = Project::load(&bundled_demo()).unwrap();
    assert_eq!(project.device, DeviceChoice::Auto);
    assert_eq!(project.dtype, DtypeChoice::Auto);
    // Small batches, so that many points where the build can stop fall in its encoding.
    project.options.batch_tokens = 96;
    project.table = Some(dir.path().join("whole.safetensors"));
    let (whole, report) = built_table(&generic, &project, false);
    assert_eq!(
        (
            report.device.as_str(),
            report.dtype.as_str(),
            report.batch.as_str()
        ),
        ("cpu", "f32", "96 tokens"),
        "the padded path batches by tokens"
    );
    assert!(report.contexts > 1000);

    // The same build, cancelled once it encodes, then resumed from its checkpoint.
    project.table = Some(dir.path().join("resumed.safetensors"));
    let id = generic.send(
        7,
        Task::Build {
            project: Box::new(project.clone()),
            resume: false,
            replace: pelt::outpath::Replace::OwnOnly,
        },
    );
    let mut asked = false;
    let (done, total) = wait_for(&generic, id, "cancelled build", |e| match e {
        Reply::Progress(p) if p.phase == Phase::Encoding && !asked => {
            generic.cancel();
            asked = true;
            None
        }
        Reply::BuildCancelled {
            done,
            total,
            checkpoint,
        } => {
            assert!(
                checkpoint.is_some_and(|c| c.is_file()),
                "a checkpoint is written"
            );
            Some((done, total))
        }
        Reply::Built { .. } => panic!("the build ended before Cancel took effect"),
        _ => None,
    });
    assert!(
        done > 0 && done < total,
        "cancelled part way: {done}/{total}"
    );
    let (resumed, report) = built_table(&generic, &project, true);
    assert_eq!(report.resumed_from, done);
    assert!(
        resumed.to_bytes().unwrap() == whole.to_bytes().unwrap(),
        "cancelled and resumed on the generic path = uninterrupted, byte for byte"
    );

    // The fused CPU path (packed batches of contexts) computes the same vectors.
    let fused = Worker::spawn(|| {});
    project.table = Some(dir.path().join("fused.safetensors"));
    let (packed, report) = built_table(&fused, &project, false);
    assert_eq!(report.batch, "32 contexts");
    assert_eq!(packed.counts, whole.counts);
    assert_eq!(packed.contexts().unwrap(), whole.contexts().unwrap());
    let mut worst = 0f32;
    for i in 0..whole.len() {
        worst = worst.max(max_abs_diff(
            &packed.embedding_at(i, 7.0),
            &whole.embedding_at(i, 7.0),
        ));
    }
    assert!(worst <= 1e-4, "generic and fused vectors differ by {worst}");
}

#[test]
fn cli_fill_build_neighbors_merge_renorm_export() {
    let (ok, out, err) = pelt(&[
        "fill",
        "--top-k",
        "3",
        "the patient was treated with [MASK] .",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.starts_with("mask 1:"));
    let d = tempfile::tempdir().unwrap();
    let t = |n: &str| d.path().join(n).display().to_string();
    let corpus = root()
        .join("assets/sample/pubmed.txt")
        .display()
        .to_string();
    let ents = root()
        .join("assets/sample/pubmed-entities.tsv")
        .display()
        .to_string();
    let common = ["--corpus", &corpus, "--entities", &ents, "--k", "8"];
    let (ok, out, err) = pelt(&[&["build", "--out", &t("all.safetensors")][..], &common].concat());
    assert!(ok, "{err}");
    // The counts of tests/fixtures/gen_counts.py (names and aliases matched in Python).
    let counts = &json("counts.json")["pubmed_sample"];
    assert!(
        out.contains(&format!(
            "{} entities, {} found",
            counts["entities"], counts["found"]
        )),
        "{out}"
    );
    for s in ["0/2", "1/2"] {
        let name = t(&format!("s{}.safetensors", &s[..1]));
        let (ok, _, err) = pelt(&[&["build", "--out", &name, "--shard", s][..], &common].concat());
        assert!(ok, "{err}");
    }
    let (ok, out, err) = pelt(&[
        "merge",
        &t("s0.safetensors"),
        &t("s1.safetensors"),
        "--out",
        &t("m.safetensors"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("shards all"), "{out}");
    let (ok, out, _) = pelt(&[
        "neighbors",
        "--table",
        &t("m.safetensors"),
        "apoptosis",
        "--k",
        "3",
    ]);
    assert!(ok);
    assert_eq!(out.lines().count(), 4, "{out}");
    let (ok, out, _) = pelt(&[
        "neighbors",
        "--table",
        &t("all.safetensors"),
        "C0162638",
        "--vocab",
        "--k",
        "3",
    ]);
    assert!(ok);
    assert!(
        out.starts_with("vocabulary tokens nearest to apoptosis"),
        "{out}"
    );
    let (ok, _, _) = pelt(&[
        "renorm",
        &t("all.safetensors"),
        "--norm",
        "3",
        "--out",
        &t("r.safetensors"),
    ]);
    assert!(ok);
    let r = pelt::table::Table::load(std::path::Path::new(&t("r.safetensors"))).unwrap();
    assert_eq!(r.norm, 3.0);
    let (ok, _, _) = pelt(&[
        "export-projector",
        "--table",
        &t("r.safetensors"),
        "--out",
        &t("proj"),
    ]);
    assert!(ok && d.path().join("proj/metadata.tsv").exists());
    // Errors are one clear line, exit code 1.
    let (ok, _, err) = pelt(&[
        "build",
        "--corpus",
        "/no/such.txt",
        "--entities",
        &ents,
        "--out",
        &t("x"),
    ]);
    assert!(!ok && err.contains("/no/such.txt does not exist"), "{err}");
    let (ok, _, err) = pelt(&[
        "neighbors",
        "--table",
        &t("all.safetensors"),
        "no-such-entity",
    ]);
    assert!(!ok && err.contains("no entity `no-such-entity`"), "{err}");
    let (ok, _, err) = pelt(&["fill", "--model", "/no/model", "x [MASK]"]);
    assert!(!ok && err.contains("/no/model does not exist"), "{err}");
}

#[test]
fn cli_bench_reports_the_committed_contexts() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("bench.json");
    let (ok, out, err) = pelt(&[
        "bench",
        "--model",
        "bundled",
        "--matmul",
        "64",
        "--json",
        &json.display().to_string(),
    ]);
    assert!(ok, "{err}");
    // Contexts, entities and tokens (every mention one mask token, windows of 64) as counted by
    // tests/fixtures/gen_counts.py with the HF tokenizer.
    let counts = &common::json("counts.json")["bench_contexts"];
    assert!(
        out.contains(&format!(
            "bundled: {} contexts ({} entities)",
            counts["contexts"], counts["entities"]
        )),
        "{out}"
    );
    assert!(out.contains("% of the peak"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let b = &v["bundled"];
    assert_eq!(b["contexts"], counts["contexts"]);
    assert_eq!(b["tokens"], counts["tokens"]);
    assert!(b["padded_tokens"].as_u64().unwrap() >= counts["tokens"].as_u64().unwrap());
    assert!(b["gflops"].as_f64().unwrap() > 0.0);
    let vectors = b["vectors"].as_object().unwrap();
    assert_eq!(vectors.len() as u64, counts["entities"].as_u64().unwrap());
    for (e, x) in vectors {
        let norm: f64 = x
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 7.0).abs() < 1e-3, "{e}: norm {norm}");
    }
    assert_eq!(b["path"], "fused");
    assert_eq!(v["dtype"], "f32");

    // The generic path (candle-transformers' layers, candle's matmul): the same vectors.
    let gjson = d.path().join("generic.json");
    let (ok, out, err) = pelt(&[
        "bench",
        "--model",
        "bundled",
        "--generic",
        "--matmul",
        "64",
        "--json",
        &gjson.display().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("generic tensor ops, padded rows, layers from candle-transformers"),
        "{out}"
    );
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(&gjson).unwrap()).unwrap();
    assert_eq!(g["generic"], true);
    let gb = &g["bundled"];
    assert_eq!(
        (&gb["path"], &gb["generic_layers"]),
        (
            &serde_json::json!("generic"),
            &serde_json::json!("candle-transformers")
        )
    );
    assert_eq!(gb["tokens"], counts["tokens"]);
    let gv = gb["vectors"].as_object().unwrap();
    for (e, x) in vectors {
        let d = x
            .as_array()
            .unwrap()
            .iter()
            .zip(gv[e].as_array().unwrap())
            .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(d < 1e-3, "{e}: fused and generic vectors differ by {d}");
    }

    let bad = d.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"entity\": \"Q1\", \"text\": \"ab\", \"start\": 1, \"end\": 9}\n",
    )
    .unwrap();
    let (ok, _, err) = pelt(&[
        "bench",
        "--model",
        "bundled",
        "--matmul",
        "0",
        "--contexts",
        &bad.display().to_string(),
    ]);
    assert!(
        !ok && err.contains("bad.jsonl:1: span 1..9 is not inside the text"),
        "{err}"
    );
}
