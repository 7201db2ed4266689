//! Hostile and broken input: outputs never destroy inputs, numbers and metadata are validated,
//! merges are exact and refuse what does not belong together, untrusted text is escaped.

mod common;
use common::*;

use candle_core::Device;
use pelt::build::{build_table, BuildInput, BuildOptions, BuildOutcome};
use pelt::corpus::Corpus;
use pelt::entities::load_entities;
use pelt::io::{temp_path, write_atomic, write_safetensors, TEMP_ATTEMPTS};
use pelt::model::{Config, Model};
use pelt::table::Table;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn tiny() -> Model {
    Model::load(&fixture("models/tiny-bert"), &Device::Cpu).unwrap()
}

/// `pelt build` of `corpus` with `extra` options (and `--k 2` unless they give `--k`).
fn build_cli(
    corpus: &[&Path],
    entities: &Path,
    model: &Path,
    out: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["build".to_string(), "--corpus".into()];
    args.extend(corpus.iter().map(|p| s(p)));
    for (flag, value) in [("--entities", entities), ("--model", model), ("--out", out)] {
        args.extend([flag.to_string(), s(value)]);
    }
    if !extra.contains(&"--k") {
        args.extend(["--k".to_string(), "2".into()]);
    }
    args.extend(extra.iter().map(|x| x.to_string()));
    pelt(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn build_with(model: &Model, opts: &BuildOptions) -> anyhow::Result<Table> {
    let corpus = [fixture("pelt/corpus.txt")];
    Ok(build_from(model, &corpus, &fixture("pelt/entities.tsv"), opts)?.0)
}

fn small_opts() -> BuildOptions {
    BuildOptions {
        k: 8,
        batch: 2,
        window_batches: 2,
        ..Default::default()
    }
}

// ---- 1. Outputs never destroy inputs ----------------------------------------------------

#[test]
fn build_refuses_an_out_that_is_an_input_and_leaves_it_intact() {
    let i = inputs();
    let weights = i.model.join("model.safetensors");
    let folder = i.dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let in_folder = folder.join("more.txt");
    std::fs::copy(&i.corpus, &in_folder).unwrap();
    let hard = i.dir.path().join("hard-link.txt");
    std::fs::hard_link(&i.corpus, &hard).unwrap();
    let via_dots = i.dir.path().join("folder/../corpus.txt");
    for (out, role) in [
        (&i.corpus, "corpus file"),
        (&i.entities, "entity list"),
        (&weights, "model file"),
        (&i.model.join("config.json"), "model file"),
        (&in_folder, "corpus file"),
        (&hard, "corpus file"),
        (&via_dots, "corpus file"),
    ] {
        let before = std::fs::read(out).unwrap();
        let (ok, _, err) = build_cli(&[&i.corpus, &folder], &i.entities, &i.model, out, &[]);
        assert!(!ok, "--out {} must be refused", out.display());
        assert!(
            err.contains(role) && err.contains("refusing to overwrite an input"),
            "{}: {err}",
            out.display()
        );
        assert_eq!(
            std::fs::read(out).unwrap(),
            before,
            "{} intact",
            out.display()
        );
    }
    // The checkpoint path (OUT.ckpt) is checked too.
    let ckpt_clash = i.dir.path().join("t");
    std::fs::copy(&i.entities, i.dir.path().join("t.ckpt")).unwrap();
    let entities = i.dir.path().join("t.ckpt");
    let (ok, _, err) = build_cli(&[&i.corpus], &entities, &i.model, &ckpt_clash, &[]);
    assert!(
        !ok && err.contains("checkpoint") && err.contains("entity list"),
        "{err}"
    );
}

#[test]
fn merge_renorm_export_and_fewrel_refuse_their_inputs_as_output() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t.safetensors");
    build_with(&tiny(), &small_opts())
        .unwrap()
        .save(&t)
        .unwrap();
    let before = std::fs::read(&t).unwrap();
    for args in [
        vec!["merge", &s(&t), "--out", &s(&t)],
        vec!["renorm", &s(&t), "--norm", "3", "--out", &s(&t)],
    ]
    .iter()
    {
        let (ok, _, err) = pelt(args);
        assert!(
            !ok && err.contains("refusing to overwrite an input"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(&t).unwrap(), before);
    // export-projector: --out must be a folder whose vectors.tsv is not the table.
    let vt = d.path().join("vectors.tsv");
    std::fs::copy(&t, &vt).unwrap();
    let (ok, _, err) = pelt(&[
        "export-projector",
        "--table",
        &s(&vt),
        "--out",
        &s(d.path()),
    ]);
    assert!(
        !ok && err.contains("refusing to overwrite an input"),
        "{err}"
    );
    let (ok, _, err) = pelt(&["export-projector", "--table", &s(&t), "--out", &s(&t)]);
    assert!(!ok && err.contains("not a folder"), "{err}");
    // entities-from-fewrel
    let fr = d.path().join("fewrel.json");
    std::fs::write(&fr, "{}").unwrap();
    let (ok, _, err) = pelt(&["entities-from-fewrel", &s(&fr), "--out", &s(&fr)]);
    assert!(!ok && err.contains("FewRel file"), "{err}");
    assert_eq!(std::fs::read_to_string(&fr).unwrap(), "{}");
}

#[cfg(unix)]
fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

#[cfg(unix)]
#[test]
fn fifo_and_folder_outputs_are_refused_and_left_as_they_are() {
    use std::os::unix::fs::FileTypeExt;
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let e = format!("{:#}", write_atomic(&fifo, b"x").unwrap_err());
    assert!(
        e.contains("a FIFO") && e.contains("not a regular file"),
        "{e}"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    // A symbolic link to the FIFO, as --out of a CLI command.
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let t = d.path().join("t.safetensors");
    build_with(&tiny(), &small_opts())
        .unwrap()
        .save(&t)
        .unwrap();
    let (ok, _, err) = pelt(&["renorm", &s(&t), "--norm", "3", "--out", &s(&link)]);
    assert!(!ok && err.contains("a FIFO"), "{err}");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    let e = format!("{:#}", write_atomic(d.path(), b"x").unwrap_err());
    assert!(e.contains("a directory"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_symlink_planted_at_the_temporary_name_is_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("out.bin");
    let victim = d.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    for a in 0..3 {
        std::os::unix::fs::symlink(&victim, temp_path(&target, a)).unwrap();
    }
    write_atomic(&target, b"new content").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read(&target).unwrap(), b"new content");
    assert!(std::fs::symlink_metadata(temp_path(&target, 0))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_failed_write_leaves_the_old_file_intact() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("table.safetensors");
    std::fs::write(&target, "old").unwrap();
    for a in 0..TEMP_ATTEMPTS {
        std::fs::create_dir(temp_path(&target, a)).unwrap();
    }
    let e = format!("{:#}", write_atomic(&target, b"new").unwrap_err());
    assert!(e.contains("temporary"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
}

// ---- 2. Validated numbers and metadata --------------------------------------------------

#[test]
fn cli_refuses_bad_numbers_before_any_work() {
    let i = inputs();
    let out = i.dir.path().join("t.safetensors");
    let build = |extra: &[&str]| build_cli(&[&i.corpus], &i.entities, &i.model, &out, extra);
    for (extra, expect) in [
        (&["--norm", "NaN"][..], "norm"),
        (&["--norm", "inf"], "norm"),
        (&["--norm", "0"], "norm"),
        (&["--norm=-1"], "norm"),
        (&["--k", "0"], "k (contexts per entity)"),
        (&["--batch", "0"], "batch size"),
    ] {
        let (ok, _, err) = build(extra);
        assert!(!ok && err.contains(expect), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (ok, _, err) = pelt(&["bench", "--model", "bundled", "--batch", "0"]);
    assert!(
        !ok && err.contains("--batch") && !err.contains("panicked"),
        "{err}"
    );
    let (ok, _, err) = pelt(&["bench", "--model", "bundled", "--matmul", "100000000000"]);
    assert!(
        !ok && err.contains("--matmul") && !err.contains("panicked"),
        "{err}"
    );
    // --resume with no checkpoint says so.
    let (ok, _, err) = build(&["--resume"]);
    assert!(!ok && err.contains("nothing to resume"), "{err}");
}

#[test]
fn build_options_are_validated_by_the_engine_too() {
    for (opts, expect) in [
        (
            BuildOptions {
                norm: f32::NAN,
                ..Default::default()
            },
            "norm",
        ),
        (
            BuildOptions {
                norm: -1.0,
                ..Default::default()
            },
            "norm",
        ),
        (
            BuildOptions {
                k: 0,
                ..Default::default()
            },
            "k ",
        ),
        (
            BuildOptions {
                batch: 0,
                ..Default::default()
            },
            "batch",
        ),
        (
            BuildOptions {
                shard: Some((2, 2)),
                ..Default::default()
            },
            "shard",
        ),
    ] {
        let e = format!("{:#}", opts.validate().unwrap_err());
        assert!(e.contains(expect), "{e}");
    }
    BuildOptions::default().validate().unwrap();
}

#[test]
fn config_values_no_encoder_can_use_are_refused_naming_the_field() {
    let base: serde_json::Value = json("models/tiny-bert/config.json");
    let file = Path::new("/m/config.json");
    for (field, value, expect) in [
        ("layer_norm_eps", "-1.0", "`layer_norm_eps`"),
        ("layer_norm_eps", "0.0", "`layer_norm_eps`"),
        ("intermediate_size", "0", "`intermediate_size` is 0"),
        ("num_attention_heads", "0", "`num_attention_heads` is 0"),
        ("num_attention_heads", "5", "not divisible"),
        (
            "max_position_embeddings",
            "0",
            "`max_position_embeddings` is 0",
        ),
        ("hidden_size", "1099511627776", "`hidden_size`"),
        ("pad_token_id", "1099511627776", "`pad_token_id`"),
        ("pad_token_id", "100000", "`pad_token_id`"),
    ] {
        let mut v = base.clone();
        v[field] = serde_json::from_str(value).unwrap();
        let e = format!("{:#}", Config::from_json(&v, file).unwrap_err());
        assert!(
            e.contains("/m/config.json") && e.contains(expect),
            "{field}: {e}"
        );
    }
    Config::from_json(&base, file).unwrap();
}

/// Sets the tensors of the model file `path` whose names contain `part` to NaN.
fn nan_tensor(path: &Path, part: &str) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, &str, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in st.tensors() {
        let mut data = t.data().to_vec();
        if name.contains(part) {
            assert_eq!(t.dtype(), safetensors::Dtype::F32);
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
        let dtype = match t.dtype() {
            safetensors::Dtype::F32 => "F32",
            safetensors::Dtype::I64 => "I64",
            other => panic!("unexpected dtype {other:?}"),
        };
        tensors.push((name, dtype, t.shape().to_vec(), data));
    }
    let meta = BTreeMap::from([("format", "pt".to_string())]);
    std::fs::write(path, write_safetensors(&meta, &tensors).unwrap()).unwrap();
}

/// The tiny model with one weight matrix set to NaN.
fn nan_model() -> tempfile::TempDir {
    let dir = copy_dir(&fixture("models/tiny-bert"));
    nan_tensor(
        &dir.path().join("model.safetensors"),
        "layer.0.output.dense.weight",
    );
    dir
}

#[test]
fn nan_weights_give_an_error_not_nan_probabilities_or_vectors() {
    let dir = nan_model();
    let (ok, out, err) = pelt(&[
        "fill",
        "--model",
        &s(dir.path()),
        "Paris is the [MASK] of France .",
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("not a finite number"), "{err}");
    assert!(!out.contains("NaN"), "{out}");
    let model = Model::load(dir.path(), &Device::Cpu).unwrap();
    let e = format!("{:#}", build_with(&model, &small_opts()).unwrap_err());
    assert!(e.contains("NaN or infinite"), "{e}");
    // Nearest vocabulary tokens with NaN word embeddings.
    let emb = copy_dir(&fixture("models/tiny-bert"));
    let path = emb.path().join("model.safetensors");
    nan_tensor(&path, "word_embeddings");
    let t = tempfile::tempdir().unwrap();
    let table = t.path().join("t.safetensors");
    let mut built = build_with(&tiny(), &small_opts()).unwrap();
    built.meta.model_sha256 = pelt::model::sha256_file(&path).unwrap();
    built.save(&table).unwrap();
    let row = (0..built.len()).find(|&i| built.counts[i] > 0).unwrap();
    let (ok, out, err) = pelt(&[
        "neighbors",
        "--table",
        &s(&table),
        "--vocab",
        "--model",
        &s(emb.path()),
        &built.entity_ids[row],
    ]);
    assert!(!ok && err.contains("word embedding"), "{out}{err}");
}

type Meta = BTreeMap<String, String>;
type Tensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;
type Edit = Box<dyn Fn(&mut Meta, &mut Tensors)>;

fn edit(f: impl Fn(&mut Meta, &mut Tensors) + 'static) -> Edit {
    Box::new(f)
}

/// Rewrites a table file's metadata and tensors.
fn edit_table(bytes: &[u8], edit: impl FnOnce(&mut Meta, &mut Tensors)) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut meta: BTreeMap<String, String> = md.metadata().clone().unwrap().into_iter().collect();
    let mut tensors: BTreeMap<String, (String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let dt = match t.dtype() {
                safetensors::Dtype::F32 => "F32",
                safetensors::Dtype::I64 => "I64",
                safetensors::Dtype::U8 => "U8",
                safetensors::Dtype::U32 => "U32",
                safetensors::Dtype::U64 => "U64",
                other => panic!("{other:?}"),
            };
            (n, (dt.to_string(), t.shape().to_vec(), t.data().to_vec()))
        })
        .collect();
    edit(&mut meta, &mut tensors);
    let meta: BTreeMap<&str, String> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let list: Vec<(String, &str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), d.as_str(), s.clone(), b.clone()))
        .collect();
    write_safetensors(&meta, &list).unwrap()
}

#[test]
fn table_metadata_is_checked_against_its_tensors() {
    let t = build_with(&tiny(), &small_opts()).unwrap();
    let bytes = t.to_bytes().unwrap();
    Table::from_bytes(&bytes).unwrap();
    let row = (0..t.len()).find(|&i| t.counts[i] > 0).unwrap();
    // Metadata fields set to values a table cannot have.
    let mut cases: Vec<(&str, Edit)> = [
        ("`norm` is NaN", "norm", "NaN"),
        ("`norm` is -1", "norm", "-1"),
        ("`norm` is 0", "norm", "0"),
        ("`k` is 0", "k", "0"),
        ("`hidden_size`", "hidden_size", "-3"),
        ("`k` = `2.5`", "k", "2.5"),
        ("`shard`", "shard", "3/2"),
        ("`case_sensitive`", "case_sensitive", "maybe"),
    ]
    .into_iter()
    .map(|(expect, field, value)| {
        let change = edit(move |m, _| {
            m.insert(field.into(), value.into());
        });
        (expect, change)
    })
    .collect();
    // Tensors edited.
    let set_count = |v: u32| {
        edit(move |_, t| {
            t.get_mut("counts").unwrap().2[row * 4..row * 4 + 4].copy_from_slice(&v.to_le_bytes())
        })
    };
    cases.extend([
        ("expected 0..=8", set_count(u32::MAX)),
        ("expected 0..=8", set_count(9)),
        (
            "fewer than its count",
            edit(move |_, t| {
                t.get_mut("found").unwrap().2[row * 8..row * 8 + 8]
                    .copy_from_slice(&0u64.to_le_bytes());
            }),
        ),
        (
            "expected a finite number",
            edit(|_, t| {
                t.get_mut("sum_norms").unwrap().2[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }),
        ),
        (
            "does not index",
            edit(|_, t| {
                let ix = &mut t.get_mut("context_text_index").unwrap().2;
                ix[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            }),
        ),
        (
            "names 1 entities",
            edit(|_, t| {
                let e = &mut t.get_mut("entities").unwrap();
                let first = e.2.iter().position(|&b| b == b'\n').unwrap() + 1;
                e.2.truncate(first);
                e.1 = vec![first];
            }),
        ),
    ]);
    // A context reference edited: the table opens, and reading that context says what is wrong.
    let first_context = |field: usize, value: u32| {
        edit_table(&bytes, move |_, t| {
            t.get_mut("context_refs").unwrap().2[field * 4..field * 4 + 4]
                .copy_from_slice(&value.to_le_bytes());
        })
    };
    for (field, value, expect) in [
        (0, 999, "entity row 999 does not hold it"),
        (5, 100000, "not inside the text"),
    ] {
        let t = Table::from_bytes(&first_context(field, value)).unwrap();
        let e = format!("{:#}", t.context(0).unwrap_err());
        assert!(e.contains(expect), "expected `{expect}`: {e}");
        assert!(t.to_bytes().is_err(), "a damaged context is not written on");
    }
    for (expect, change) in cases {
        let edited = edit_table(&bytes, |m, t| change(m, t));
        let e = format!("{:#}", Table::from_bytes(&edited).unwrap_err());
        assert!(e.contains(expect), "expected `{expect}`: {e}");
    }
}

// ---- Checkpoints ---------------------------------------------------------------------------

#[test]
fn edited_checkpoints_are_refused_and_a_new_build_says_it_replaces_one() {
    let model = tiny();
    let corpus = Corpus::open(&[fixture("pelt/corpus.txt")]).unwrap();
    let entities = load_entities(&fixture("pelt/entities.tsv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("t.safetensors.ckpt");
    let opts = BuildOptions {
        k: 8,
        batch: 1,
        window_batches: 4,
        encoders: 1,
        ..Default::default()
    };
    let run = |resume: bool, cancel: &AtomicBool, stop_at: u64| {
        build_table(
            BuildInput {
                model: &model,
                corpus: &corpus,
                entities: &entities,
                options: &opts,
                out: None,
                tmp: None,
                checkpoint: Some(ckpt.clone()),
                resume,
                cancel,
            },
            &mut |p| {
                if p.phase == pelt::progress::Phase::Encoding && p.done >= stop_at {
                    cancel.store(true, Ordering::SeqCst);
                }
            },
        )
    };
    // Resume without a checkpoint is an error that says so.
    let e = format!(
        "{:#}",
        run(true, &AtomicBool::new(false), u64::MAX).err().unwrap()
    );
    assert!(e.contains("nothing to resume"), "{e}");
    let cancel = AtomicBool::new(false);
    let out = run(false, &cancel, 1).unwrap();
    assert!(matches!(out, BuildOutcome::Cancelled { .. }));
    let good = std::fs::read(&ckpt).unwrap();
    // Edited fields (done, counts, skipped) are caught by the checksum.
    let st = safetensors::SafeTensors::read_metadata(&good).unwrap().1;
    let done = st.metadata().as_ref().unwrap()["done"].clone();
    let at = good
        .windows(done.len() + 9)
        .position(|w| w == format!("\"done\":\"{done}\"").as_bytes())
        .unwrap();
    let mut edited = good.clone();
    edited[at + 8] = if done.as_bytes()[0] == b'9' {
        b'1'
    } else {
        b'9'
    };
    std::fs::write(&ckpt, &edited).unwrap();
    let e = format!(
        "{:#}",
        run(true, &AtomicBool::new(false), u64::MAX).err().unwrap()
    );
    assert!(e.contains("checksum"), "{e}");
    // A bit of the sums of the window in progress (the file's only tensor, at its end).
    let sums = safetensors::SafeTensors::deserialize(&good).unwrap();
    assert!(
        !sums.tensor("sums").unwrap().data().is_empty(),
        "cancelled inside a window"
    );
    let mut edited = good.clone();
    let last = edited.len() - 1;
    edited[last] ^= 1;
    std::fs::write(&ckpt, &edited).unwrap();
    let e = format!(
        "{:#}",
        run(true, &AtomicBool::new(false), u64::MAX).err().unwrap()
    );
    assert!(e.contains("checksum"), "{e}");
    // The intact checkpoint resumes to the uninterrupted result.
    std::fs::write(&ckpt, &good).unwrap();
    let BuildOutcome::Finished(resumed, _) = run(true, &AtomicBool::new(false), u64::MAX).unwrap()
    else {
        panic!("resume did not finish")
    };
    let whole = build_with(&model, &opts).unwrap();
    assert_eq!(resumed.to_bytes().unwrap(), whole.to_bytes().unwrap());
}

#[test]
fn cli_build_says_it_replaces_an_existing_checkpoint() {
    let i = inputs();
    let out = i.dir.path().join("t.safetensors");
    std::fs::write(i.dir.path().join("t.safetensors.ckpt"), "stale").unwrap();
    // Not a checkpoint of this tool: replaced only with --force.
    let (ok, _, err) = build_cli(&[&i.corpus], &i.entities, &i.model, &out, &[]);
    assert!(!ok && err.contains("not a PELT checkpoint"), "{err}");
    let (ok, _, err) = build_cli(&[&i.corpus], &i.entities, &i.model, &out, &["--force"]);
    assert!(ok, "{err}");
    assert!(err.contains("replacing it with a new build"), "{err}");
}

// ---- 3. A correct merge --------------------------------------------------------------------

#[test]
fn merged_shards_are_byte_identical_to_the_single_build_and_bad_sets_are_refused() {
    let model = tiny();
    let opts = small_opts();
    let whole = build_with(&model, &opts).unwrap();
    let shard = |i, n| {
        build_with(
            &model,
            &BuildOptions {
                shard: Some((i, n)),
                ..opts.clone()
            },
        )
        .unwrap()
    };
    let (s0, s1) = (shard(0, 2), shard(1, 2));
    assert!(!s0.contexts().unwrap().is_empty() && !s1.contexts().unwrap().is_empty());
    let merged = Table::merge(&[s1.clone(), s0.clone()]).unwrap();
    assert_eq!(merged.to_bytes().unwrap(), whole.to_bytes().unwrap());
    // Through files and three shards, with a partial merge on the way.
    let d = tempfile::tempdir().unwrap();
    let (t0, t1, t2) = (shard(0, 3), shard(1, 3), shard(2, 3));
    let err = format!("{:#}", Table::merge(&[t0.clone(), t2.clone()]).unwrap_err());
    assert!(
        err.contains("shards 1/3 are missing") && err.contains("--partial"),
        "{err}"
    );
    let part = Table::merge_with(&[t0.clone(), t2.clone()], true).unwrap();
    assert_eq!(part.meta.shard, "0/3+2/3");
    let p = d.path().join("part.safetensors");
    part.save(&p).unwrap();
    let part = Table::load(&p).unwrap();
    let full = Table::merge(&[t1.clone(), part]).unwrap();
    assert_eq!(full.to_bytes().unwrap(), whole.to_bytes().unwrap());
    // Refused: the same shard twice, mixed shard counts, a full table, overflowing counts.
    let e = format!("{:#}", Table::merge(&[s0.clone(), s0.clone()]).unwrap_err());
    assert!(e.contains("shard 0/2 is given twice"), "{e}");
    let e = format!("{:#}", Table::merge(&[s0.clone(), t1.clone()]).unwrap_err());
    assert!(
        e.contains("shards of 3") && e.contains("shards of 2"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Table::merge(&[whole.clone(), s1.clone()]).unwrap_err()
    );
    assert!(e.contains("complete table"), "{e}");
    let e = format!(
        "{:#}",
        Table::merge(&[s0.clone(), whole.clone()]).unwrap_err()
    );
    assert!(e.contains("complete table"), "{e}");
    // Two shards that hold the same entity rows.
    let mut twin = s0.clone();
    twin.meta.shard = "1/2".into();
    let e = format!("{:#}", Table::merge(&[s0.clone(), twin]).unwrap_err());
    assert!(e.contains("the shards overlap"), "{e}");
    let other_batch = build_with(
        &model,
        &BuildOptions {
            shard: Some((1, 2)),
            batch: 3,
            ..opts.clone()
        },
    )
    .unwrap();
    let e = format!(
        "{:#}",
        Table::merge(&[s0.clone(), other_batch]).unwrap_err()
    );
    assert!(e.contains("window"), "{e}");
    let mut renormed = s1.clone();
    renormed.norm = 3.0;
    let e = format!("{:#}", Table::merge(&[s0.clone(), renormed]).unwrap_err());
    assert!(e.contains("norm"), "{e}");
    // The CLI: --partial and the message naming missing shards.
    let f0 = d.path().join("s0.safetensors");
    s0.save(&f0).unwrap();
    let out = d.path().join("m.safetensors");
    let (ok, _, err) = pelt(&["merge", &s(&f0), "--out", &s(&out)]);
    assert!(!ok && err.contains("shards 1/2 are missing"), "{err}");
    let (ok, stdout, err) = pelt(&["merge", &s(&f0), "--partial", "--out", &s(&out)]);
    assert!(ok, "{err}");
    assert!(stdout.contains("shards 0/2"), "{stdout}");
}

// ---- 5. Escaping ------------------------------------------------------------------------------

#[test]
fn cli_prints_untrusted_names_with_control_characters_escaped() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t.safetensors");
    let mut table = build_with(&tiny(), &small_opts()).unwrap();
    let row = (0..table.len()).find(|&i| table.counts[i] > 0).unwrap();
    table.entity_names[row] = "Evil\x1b[2J\nName".into();
    table.entity_ids[row] = "Q\x1b]0;title\x07".into();
    table.save(&t).unwrap();
    let (ok, out, err) = pelt(&[
        "neighbors",
        "--table",
        &s(&t),
        "--k",
        "3",
        "Q\x1b]0;title\x07",
    ]);
    assert!(ok, "{err}");
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("Evil\\e[2J\\nName"), "{out}");
    let (ok, _, err) = pelt(&["neighbors", "--table", &s(&t), "no\x1b[31mone"]);
    assert!(
        !ok && !err.contains('\x1b') && err.contains("no\\e[31mone"),
        "{err:?}"
    );
}
