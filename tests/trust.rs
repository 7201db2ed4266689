//! Files from other people: outputs never replace a file this tool did not write without the
//! user's consent, and every text input is read with a cap.

mod common;
use common::*;

use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn build(i: &Inputs, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let (c, e, m, o) = (s(&i.corpus), s(&i.entities), s(&i.model), s(out));
    let mut args = vec![
        "build",
        "--corpus",
        &c,
        "--entities",
        &e,
        "--model",
        &m,
        "--out",
        &o,
        "--k",
        "2",
    ];
    args.extend_from_slice(extra);
    pelt(&args)
}

const THESIS: &[u8] = b"Chapter 1. Introduction\nEntity vectors from a domain corpus.\n";

/// `pelt build --out` over a file that is not a table is refused, naming the file and its
/// size, and the file is left as it was; `--force` replaces it; a table replaces a table.
#[test]
fn build_out_over_a_stranger_file_needs_force() {
    let i = inputs();
    let thesis = i.dir.path().join("thesis.txt");
    std::fs::write(&thesis, THESIS).unwrap();
    let (ok, _, err) = build(&i, &thesis, &[]);
    assert!(!ok, "a build over thesis.txt must be refused");
    assert!(
        err.contains("thesis.txt")
            && err.contains(&format!("{} bytes", THESIS.len()))
            && err.contains("not a PELT table")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&thesis).unwrap(), THESIS, "thesis.txt intact");
    // Its checkpoint path is guarded too.
    let out = i.dir.path().join("t.safetensors");
    std::fs::write(i.dir.path().join("t.safetensors.ckpt"), THESIS).unwrap();
    let (ok, _, err) = build(&i, &out, &[]);
    assert!(
        !ok && err.contains("checkpoint") && err.contains("not a PELT checkpoint"),
        "{err}"
    );
    std::fs::remove_file(i.dir.path().join("t.safetensors.ckpt")).unwrap();
    // With --force the stranger's file is replaced by a table.
    let (ok, _, err) = build(&i, &thesis, &["--force"]);
    assert!(ok, "{err}");
    pelt::table::Table::load(&thesis).unwrap();
    // A table is replaced without --force.
    let (ok, _, err) = build(&i, &thesis, &[]);
    assert!(ok, "{err}");
}

/// The other commands that write files guard their outputs the same way.
#[test]
fn renorm_merge_export_and_entity_lists_refuse_a_stranger_file_without_force() {
    let i = inputs();
    let table = i.dir.path().join("t.safetensors");
    let (ok, _, err) = build(&i, &table, &[]);
    assert!(ok, "{err}");
    let shard = i.dir.path().join("shard.safetensors");
    let (ok, _, err) = build(&i, &shard, &["--shard", "0/2"]);
    assert!(ok, "{err}");
    let sh = s(&shard);
    let thesis = i.dir.path().join("thesis.txt");
    let export = i.dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let (t, th, ex) = (s(&table), s(&thesis), s(&export));
    let fewrel = s(&fixture("linked/fewrel.json"));
    let cases: Vec<(Vec<&str>, PathBuf)> = vec![
        (
            vec!["renorm", &t, "--norm", "5", "--out", &th],
            thesis.clone(),
        ),
        (
            vec!["merge", &sh, "--partial", "--out", &th],
            thesis.clone(),
        ),
        (
            vec!["export-projector", "--table", &t, "--out", &ex],
            export.join("vectors.tsv"),
        ),
        (
            vec!["entities-from-fewrel", &fewrel, "--out", &th],
            thesis.clone(),
        ),
    ];
    for (args, victim) in cases {
        std::fs::write(&victim, THESIS).unwrap();
        let (ok, _, err) = pelt(&args);
        assert!(!ok && err.contains("--force"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&victim).unwrap(), THESIS, "{args:?}");
        let mut forced = args.clone();
        forced.push("--force");
        let (ok, _, err) = pelt(&forced);
        assert!(ok, "{forced:?}: {err}");
        assert_ne!(std::fs::read(&victim).unwrap(), THESIS, "{forced:?}");
        // Now an output of its own kind: replaced without --force.
        let (ok, _, err) = pelt(&args);
        assert!(ok, "{args:?} again: {err}");
    }
}

/// Runs `pelt` and returns (success, stderr, peak resident memory in MB).
#[allow(clippy::zombie_processes)] // waited for by wait4, which also gives the peak memory
fn pelt_peak(args: &[&str]) -> (bool, String, f64) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pelt"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: wait4 fills the status and the rusage it is given; the child is ours.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut ru) }, pid);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, reader.join().unwrap(), ru.ru_maxrss as f64 / 1024.0)
}

/// A file whose second line is `mb` megabytes long.
fn with_long_line(path: &Path, first: &str, mb: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "{first}").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..mb {
        f.write_all(&chunk).unwrap();
    }
    writeln!(f).unwrap();
}

/// A 100 MB line in an entity list, a label or probe file, a project file or a model's
/// config.json is refused with the file (and line) named, and reading it costs far less
/// memory than the line.
#[test]
fn a_100_mb_line_in_a_text_input_is_refused_in_bounded_memory() {
    let i = inputs();
    // The same command on good inputs: the baseline.
    let out = i.dir.path().join("t.safetensors");
    let (c, m, o) = (s(&i.corpus), s(&i.model), s(&out));
    let e_good = s(&i.entities);
    let build_peak = |entities: &str| {
        pelt_peak(&[
            "build",
            "--corpus",
            &c,
            "--entities",
            entities,
            "--model",
            &m,
            "--out",
            &o,
            "--k",
            "2",
        ])
    };
    let (ok, err, base) = build_peak(&e_good);
    assert!(ok, "{err}");
    let long_list = i.dir.path().join("long.tsv");
    with_long_line(&long_list, "Q1\tAspirin", 100);
    let l = s(&long_list);
    let (ok, err, peak) = build_peak(&l);
    assert!(
        !ok && err.contains("long.tsv:2") && err.contains("longer than the limit"),
        "{err}"
    );
    assert!(
        peak < base + 40.0,
        "entity list: peak {peak:.0} MB vs {base:.0} MB"
    );

    // Labels and probes for the evaluation: a good file is the baseline.
    let ids: Vec<String> = std::fs::read_to_string(&i.entities)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect();
    let first_id = ids[0].clone();
    let labels = i.dir.path().join("labels.tsv");
    let good: String = ids
        .iter()
        .enumerate()
        .map(|(n, id)| format!("{id}\t{}\n", if n % 2 == 0 { "place" } else { "thing" }))
        .collect();
    std::fs::write(&labels, good).unwrap();
    let (ok, err, base_eval) = pelt_peak(&[
        "eval",
        "typing",
        "--table",
        &o,
        "--model",
        &m,
        "--labels",
        &s(&labels),
    ]);
    assert!(ok, "{err}");
    for (args, name) in [
        (
            vec!["eval", "typing", "--table", &o, "--model", &m, "--labels"],
            "long-labels.tsv",
        ),
        (
            vec![
                "eval", "cloze", "--table", &o, "--model", &m, "--device", "cpu", "--probes",
            ],
            "long-probes.tsv",
        ),
    ] {
        let long = i.dir.path().join(name);
        with_long_line(&long, &format!("{first_id}\tthing"), 100);
        let mut a = args.clone();
        let l = s(&long);
        a.push(&l);
        let (ok, err, peak) = pelt_peak(&a);
        assert!(
            !ok && err.contains(&format!("{name}:2")) && err.contains("longer than the limit"),
            "{name}: {err}"
        );
        assert!(
            peak < base_eval + 40.0,
            "{name}: peak {peak:.0} MB vs {base_eval:.0} MB"
        );
    }

    let project = i.dir.path().join("long.ron");
    with_long_line(&project, "(", 100);
    let (ok, err, peak) = pelt_peak(&["check", &s(&project)]);
    assert!(
        !ok && err.contains("long.ron:2") && err.contains("longer than the limit"),
        "{err}"
    );
    assert!(peak < 60.0, "project: peak {peak:.0} MB");

    let config = i.model.join("config.json");
    let good = std::fs::read_to_string(&config).unwrap();
    with_long_line(&config, good.trim_end(), 100);
    let (ok, err, peak) = build_peak(&e_good);
    assert!(
        !ok && err.contains("config.json") && err.contains("limit"),
        "{err}"
    );
    assert!(
        peak < base + 40.0,
        "config.json: peak {peak:.0} MB vs {base:.0} MB"
    );
}

/// `pelt check` names what a shared project reads and writes, and flags a table outside the
/// project's folder and a table path that holds someone else's file.
#[test]
fn check_flags_outputs_outside_the_folder_and_files_it_would_refuse() {
    let i = inputs();
    let proj_dir = i.dir.path().join("proj");
    std::fs::create_dir(&proj_dir).unwrap();
    let thesis = i.dir.path().join("thesis.txt");
    std::fs::write(&thesis, THESIS).unwrap();
    let project = proj_dir.join("shared.ron");
    std::fs::write(
        &project,
        "(\n  name: \"shared\",\n  corpus: [\"../corpus.txt\"],\n  table: Some(\"../thesis.txt\"),\n  colour: 3,\n)",
    )
    .unwrap();
    let (ok, stdout, err) = pelt(&["check", &s(&project)]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("shared.ron:5: unknown field `colour`"),
        "{stdout}"
    );
    let table_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("table"))
        .unwrap();
    assert!(
        table_line.contains("outside the project's folder")
            && table_line.contains("not a PELT table"),
        "{stdout}"
    );
    // Inside the folder and new: nothing to flag.
    std::fs::write(
        &project,
        "(\n  corpus: [\"../corpus.txt\"],\n  table: Some(\"t.safetensors\"),\n)",
    )
    .unwrap();
    let (ok, stdout, err) = pelt(&["check", &s(&project)]);
    assert!(ok, "{err}");
    let table_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("table"))
        .unwrap();
    assert!(!table_line.contains('('), "{stdout}");
}
