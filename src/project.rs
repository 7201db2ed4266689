//! Projects: the inputs and options of one table, saved as RON. Paths are stored relative to
//! the project file's folder where possible, so a project travels with its data.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

use crate::build::BuildOptions;
use crate::model::DeviceChoice;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    pub name: String,
    /// Model directory; `None` means the bundled model.
    pub model: Option<PathBuf>,
    pub corpus: Vec<PathBuf>,
    pub entities: Option<PathBuf>,
    /// Where the built table is written.
    pub table: Option<PathBuf>,
    pub options: BuildOptions,
    pub device: DeviceChoice,
    /// Probe sentence for the norm comparison and preview.
    pub probe: String,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            name: "untitled".into(),
            model: None,
            corpus: vec![],
            entities: None,
            table: None,
            options: BuildOptions::default(),
            device: DeviceChoice::Auto,
            probe: String::new(),
        }
    }
}

impl Project {
    /// Reads a project; relative paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read project {}", path.display()))?;
        let mut p: Project = ron::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: {}",
                path.display(),
                e.span.start.line,
                e.span.start.col,
                e.code
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        p.map_paths(|q| {
            if q.is_absolute() {
                q.to_path_buf()
            } else {
                normalize(&base.join(q))
            }
        });
        Ok(p)
    }

    /// Writes the project atomically; paths under the project's folder's parent become relative.
    pub fn save(&self, path: &Path) -> Result<()> {
        let base = path
            .parent()
            .map(absolute)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut p = self.clone();
        p.map_paths(|q| relative_to(&absolute(q), &base));
        let text = ron::ser::to_string_pretty(&p, ron::ser::PrettyConfig::default())?;
        crate::io::write_atomic(path, text.as_bytes())
    }

    fn map_paths(&mut self, f: impl Fn(&Path) -> PathBuf) {
        self.model = self.model.as_deref().map(&f);
        self.corpus = self.corpus.iter().map(|c| f(c)).collect();
        self.entities = self.entities.as_deref().map(&f);
        self.table = self.table.as_deref().map(&f);
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(crate::model::bundled_model_dir)
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

/// The bundled demo project, if the repository's `projects/` folder is present.
pub fn bundled_demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("projects/pubmed-demo.ron")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_demo_loads_with_resolved_paths() {
        let p = Project::load(&bundled_demo()).unwrap();
        assert!(
            p.corpus[0].ends_with("assets/sample/pubmed.txt") && p.corpus[0].is_file(),
            "{:?}",
            p.corpus
        );
        assert!(p.entities.as_ref().unwrap().is_file());
        assert!(p.model_dir().join("config.json").is_file());
        assert_eq!(p.options.k, 256);
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

    #[test]
    fn bad_project_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.ron");
        std::fs::write(&path, "(\n  name: \"x\",\n  corpus: 5,\n)").unwrap();
        let e = format!("{:#}", Project::load(&path).unwrap_err());
        assert!(e.contains("bad.ron:3"), "{e}");
    }
}
