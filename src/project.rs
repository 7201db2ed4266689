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
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read project {}", path.display()))?;
        let mut p: Project = ron::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}:{}:{}: {}", path.display(), e.span.start.line, e.span.start.col, e.code)
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        p.map_paths(|q| if q.is_absolute() { q.to_path_buf() } else { normalize(&base.join(q)) });
        Ok(p)
    }

    /// Writes the project atomically; paths under the project's folder's parent become relative.
    pub fn save(&self, path: &Path) -> Result<()> {
        let base = path.parent().map(|b| absolute(b)).unwrap_or_else(|| PathBuf::from("."));
        let mut p = self.clone();
        p.map_paths(|q| relative_to(&absolute(q), &base));
        let text = ron::ser::to_string_pretty(&p, ron::ser::PrettyConfig::default())?;
        crate::table::write_atomic(path, text.as_bytes())
    }

    fn map_paths(&mut self, f: impl Fn(&Path) -> PathBuf) {
        self.model = self.model.as_deref().map(&f);
        self.corpus = self.corpus.iter().map(|c| f(c)).collect();
        self.entities = self.entities.as_deref().map(&f);
        self.table = self.table.as_deref().map(&f);
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(crate::model::bundled_model_dir)
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
