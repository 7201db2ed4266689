//! Projects store a model from the Hugging Face cache as its id. Its own test binary: it sets
//! `HF_HUB_CACHE` for the whole process.

mod common;
use common::*;

use pelt::model::hub::resolve_in;
use pelt::project::Project;

#[test]
fn projects_store_cached_models_as_ids() {
    let (d, root) = fake_cache();
    // The process environment is shared by the tests of this binary: set the cache for all.
    std::env::set_var("HF_HUB_CACHE", &root);
    let mut p = Project {
        model: Some(resolve_in(&root, "org/tiny", None).unwrap()),
        ..Default::default()
    };
    let path = d.path().join("p.ron");
    p.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("model_id: Some(\"org/tiny\")"), "{text}");
    let q = Project::load(&path).unwrap();
    assert_eq!(q.model_id.as_deref(), Some("org/tiny"));
    assert!(q.resolve_model().unwrap().ends_with("snapshots/abc"));
    assert_eq!(q.model_label(), "org/tiny");
    // Another revision keeps its hash.
    p.model = Some(resolve_in(&root, "org/tiny", Some("v1")).unwrap());
    p.save(&path).unwrap();
    assert_eq!(
        Project::load(&path).unwrap().model_id.as_deref(),
        Some("org/tiny@def")
    );
    // A missing model is named, with the cached ones listed.
    p.model = None;
    p.model_id = Some("org/gone".into());
    let e = format!("{:#}", p.resolve_model().unwrap_err());
    assert!(
        e.contains("the project's model `org/gone`") && e.contains("org/tiny"),
        "{e}"
    );
    p.model_id = None;
    p.model = Some(d.path().join("moved-away"));
    let e = format!("{:#}", p.resolve_model().unwrap_err());
    assert!(e.contains("moved-away does not exist"), "{e}");
}
