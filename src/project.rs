//! Projects: the inputs and options of one table, saved as RON. Paths are stored relative to
//! the project file's folder where possible, so a project travels with its data.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

use crate::build::BuildOptions;
use crate::model::{DeviceChoice, DtypeChoice};

mod check;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    pub name: String,
    /// Model directory; `None` (and no `model_id`) means the bundled model.
    pub model: Option<PathBuf>,
    /// A Hugging Face id (`ORG/NAME[@REV]`) resolved in the local cache; wins over `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    pub corpus: Vec<PathBuf>,
    pub entities: Option<PathBuf>,
    /// Where the built table is written.
    pub table: Option<PathBuf>,
    pub options: BuildOptions,
    pub device: DeviceChoice,
    /// Precision of the model (`Auto`: bf16 on GPUs that run it, f32 elsewhere).
    pub dtype: DtypeChoice,
    /// Probe sentence for the norm comparison and preview.
    pub probe: String,
    /// What the Evaluate tab runs, and its last results.
    pub eval: crate::eval::EvalSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_results: Option<crate::eval::EvalResults>,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            name: "untitled".into(),
            model: None,
            model_id: None,
            corpus: vec![],
            entities: None,
            table: None,
            options: BuildOptions::default(),
            device: DeviceChoice::Auto,
            dtype: DtypeChoice::Auto,
            probe: String::new(),
            eval: crate::eval::EvalSettings::default(),
            eval_results: None,
        }
    }
}

/// The largest project file read.
pub const MAX_PROJECT_BYTES: u64 = 16 << 20;

impl Project {
    /// Reads a project; relative paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self::load_checked(path)?.0)
    }

    /// [`Project::load`], with a warning (`FILE:LINE: …`) for each field this version does
    /// not know. The file is read with caps on its size and line length; numbers are
    /// checked as the CLI checks them.
    pub fn load_checked(path: &Path) -> Result<(Self, Vec<String>)> {
        let text = crate::corpus::read_text_capped(
            path,
            MAX_PROJECT_BYTES,
            crate::corpus::MAX_TEXT_LINE_BYTES,
        )
        .with_context(|| format!("cannot read project {}", crate::escape::path(path)))?;
        let mut p: Project = ron::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: {}",
                crate::escape::path(path),
                e.span.start.line,
                e.span.start.col,
                e.code
            )
        })?;
        let keys = check::keys_with_lines(&text);
        let at = |field: &str| {
            let line = keys.iter().find(|(k, _)| k == field).map(|k| k.1);
            let file = crate::escape::path(path);
            match line {
                Some(l) => format!("{file}:{l}: field `{field}`"),
                None => format!("{file}: field `{field}`"),
            }
        };
        p.options.validate().with_context(|| at("options"))?;
        check::validate_eval(&p).with_context(|| at("eval"))?;
        let warnings = check::unknown_field_warnings(&text, &crate::escape::path(path));
        let base = path.parent().unwrap_or(Path::new("."));
        p.map_paths(|q| {
            if q.is_absolute() {
                q.to_path_buf()
            } else {
                normalize(&base.join(q))
            }
        });
        Ok((p, warnings))
    }

    /// The files a build of this project writes: its table and the table's checkpoint.
    pub fn outputs(&self) -> Vec<(&'static str, PathBuf)> {
        self.table
            .iter()
            .flat_map(|t| {
                [
                    ("table", t.clone()),
                    ("checkpoint", crate::build::checkpoint_path(t)),
                ]
            })
            .collect()
    }

    /// The outputs ([`Project::outputs`]) that lie outside the folder of the project file
    /// `project_file` (after `..` and symbolic links are resolved): a shared project that
    /// writes there deserves a second look.
    pub fn outputs_outside(&self, project_file: &Path) -> Vec<(&'static str, PathBuf)> {
        let base = crate::outpath::resolve(project_file.parent().unwrap_or(Path::new(".")));
        self.outputs()
            .into_iter()
            .filter(|(_, p)| !crate::outpath::resolve(p).starts_with(&base))
            .collect()
    }

    /// Writes the project atomically; paths under the project's folder's parent become relative.
    pub fn save(&self, path: &Path) -> Result<()> {
        let base = path
            .parent()
            .map(absolute)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut p = self.clone();
        // A model folder inside the Hugging Face cache is stored as its id, so the project
        // works on any machine that has that model cached.
        if let Some(dir) = &p.model {
            let root = crate::model::hub::cache_root();
            if let Some(id) = crate::model::hub::id_of_snapshot(&absolute(&root), &absolute(dir)) {
                let main = crate::model::hub::resolve_in(&root, &id, None).ok();
                let hash = dir.file_name().map(|h| h.to_string_lossy().into_owned());
                p.model_id = Some(match (main.map(|m| absolute(&m)), hash) {
                    (Some(m), _) if m == absolute(dir) => id,
                    (_, Some(h)) => format!("{id}@{h}"),
                    _ => id,
                });
                p.model = None;
            }
        }
        p.map_paths(|q| relative_to(&absolute(q), &base));
        let text = ron::ser::to_string_pretty(&p, ron::ser::PrettyConfig::default())?;
        crate::io::write_atomic(path, text.as_bytes())
    }

    fn map_paths(&mut self, f: impl Fn(&Path) -> PathBuf) {
        self.model = self.model.as_deref().map(&f);
        self.corpus = self.corpus.iter().map(|c| f(c)).collect();
        self.entities = self.entities.as_deref().map(&f);
        self.table = self.table.as_deref().map(&f);
        self.eval.labels = self.eval.labels.as_deref().map(&f);
        self.eval.probes = self.eval.probes.as_deref().map(&f);
        self.eval.fewrel = self.eval.fewrel.iter().map(|c| f(c)).collect();
    }

    /// The model folder to load: the cached id, the folder, or the bundled model. The error
    /// names what is missing (and, for an id, lists the cached models).
    pub fn resolve_model(&self) -> Result<PathBuf> {
        if let Some(id) = &self.model_id {
            return crate::model::hub::resolve(id)
                .with_context(|| format!("the project's model `{id}`"));
        }
        match &self.model {
            Some(dir) if !dir.is_dir() => anyhow::bail!(
                "the project's model folder {} does not exist; choose another model",
                dir.display()
            ),
            Some(dir) => Ok(dir.clone()),
            None => crate::model::bundled_model_path(),
        }
    }

    /// [`Project::resolve_model`], or the path that was asked for (so that loading it gives
    /// the error).
    pub fn model_dir(&self) -> PathBuf {
        self.resolve_model().unwrap_or_else(|_| match &self.model {
            Some(d) => d.clone(),
            None => crate::model::bundled_model_dir(),
        })
    }

    /// A short label of the model: the id, the folder name, or `bundled`.
    pub fn model_label(&self) -> String {
        match (&self.model_id, &self.model) {
            (Some(id), _) => id.clone(),
            (None, Some(d)) => d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.display().to_string()),
            (None, None) => "bundled".into(),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&std::env::current_dir().unwrap_or_default().join(p))
    }
}

/// Removes `.` and resolves `..` lexically.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn relative_to(p: &Path, base: &Path) -> PathBuf {
    let pc: Vec<Component> = p.components().collect();
    let bc: Vec<Component> = base.components().collect();
    let common = pc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    // Only relativise within a shared top-level folder (keeps /usr/... absolute).
    if common < 2 {
        return p.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &pc[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The demo project file: the checkout's, else the copy unpacked from the binary (see
/// [`crate::model::embedded_files`]).
pub fn demo_project_path() -> Result<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("projects/pubmed-demo.ron");
    if src.is_file() {
        return Ok(src);
    }
    let (_, demo_files) = crate::model::embedded_files();
    if demo_files.is_empty() {
        bail!("the demo project is not here: open projects/pubmed-demo.ron from a checkout of the repository");
    }
    let root = crate::model::unpacked_root("demo")
        .context("no data folder to unpack the demo project into")?;
    crate::model::write_files(&root, demo_files, true)?;
    Ok(root.join("projects/pubmed-demo.ron"))
}

/// The bundled demo project: the checkout's, else the copy the binary carries (unpacked into
/// the user's data folder).
pub fn bundled_demo() -> PathBuf {
    demo_project_path().unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("projects/pubmed-demo.ron")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_demo_loads_with_resolved_paths() {
        let p = Project::load(&bundled_demo()).unwrap();
        assert!(
            p.corpus[0].ends_with("assets/sample/pubmed-linked.jsonl") && p.corpus[0].is_file(),
            "{:?}",
            p.corpus
        );
        assert!(p.entities.as_ref().unwrap().is_file());
        assert!(p.model_dir().join("config.json").is_file());
        assert!(
            p.eval.fewrel.iter().all(|f| f.is_file()),
            "{:?}",
            p.eval.fewrel
        );
        assert_eq!(p.options.k, 256);
        // A project file from before dtype, batch tokens and threads loads with their defaults.
        let text = std::fs::read_to_string(bundled_demo()).unwrap();
        assert!(
            !text.contains("dtype") && !text.contains("batch_tokens") && !text.contains("threads")
        );
        assert_eq!(p.dtype, DtypeChoice::Auto);
        assert_eq!(
            (p.options.batch_tokens, p.options.threads),
            (crate::build::DEFAULT_BATCH_TOKENS, 0)
        );
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Project::load(&bundled_demo()).unwrap();
        p.corpus = vec![dir.path().join("data/c.txt")];
        p.options.norm = 3.5;
        let path = dir.path().join("proj/x.ron");
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"../data/c.txt\""), "{text}");
        let q = Project::load(&path).unwrap();
        assert_eq!(q, p);
    }

    /// A shared project with numbers out of range is refused naming the file, line and
    /// field; unknown fields load with a warning naming them and their line.
    #[test]
    fn projects_from_others_are_checked_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.ron");
        for (body, line, field) in [
            ("  options: (\n    k: 0,\n  ),", 3, "options"),
            ("  options: (\n    norm: -1.0,\n  ),", 3, "options"),
            ("  options: (\n    batch: 0,\n  ),", 3, "options"),
            ("  eval: (\n    k: 0,\n  ),", 3, "eval"),
            ("  eval: (\n    norms: [1.0, inf],\n  ),", 3, "eval"),
        ] {
            std::fs::write(&path, format!("(\n  name: \"x\",\n{body}\n)")).unwrap();
            let e = format!("{:#}", Project::load(&path).unwrap_err());
            assert!(
                e.contains(&format!("shared.ron:{line}: field `{field}`")),
                "{body}: {e}"
            );
        }
        std::fs::write(
            &path,
            "(\n  name: \"x\",\n  colour: \"red\",\n  options: (\n    k: 4,\n    turbo: true,\n  ),\n)",
        )
        .unwrap();
        let (p, warnings) = Project::load_checked(&path).unwrap();
        assert_eq!(p.options.k, 4);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].ends_with("shared.ron:3: unknown field `colour` (ignored)"));
        assert!(warnings[1].ends_with("shared.ron:6: unknown field `options.turbo` (ignored)"));
    }

    #[test]
    fn bad_project_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.ron");
        std::fs::write(&path, "(\n  name: \"x\",\n  corpus: 5,\n)").unwrap();
        let e = format!("{:#}", Project::load(&path).unwrap_err());
        assert!(e.contains("bad.ron:3"), "{e}");
    }
}
