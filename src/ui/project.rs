//! The left panel: how PELT works, the project's inputs and parameters, and the build.

use egui::{Color32, RichText, Ui};
use pelt::model::{DeviceChoice, DtypeChoice};
use pelt::progress::format_secs;

use super::widgets::{self, file_name, hint, section};
use pelt::project::Project;

use super::{Command, Session};

/// The method in a few lines (left panel and Help window).
pub const HOW_PELT_WORKS: &[(&str, &str)] = &[
    ("Collect", "take up to K sentences of the domain corpus that mention the entity: spans the corpus links to it (as PELT does with Wikipedia anchors), or matches of its name and aliases."),
    ("Mask", "replace the mention by a single [MASK] and run the masked language model."),
    (
        "Read out",
        "at the mask, take the output of the MLM head's transform layer: the vector the head compares with every word embedding to predict a token.",
    ),
    ("Sum & rescale", "add these vectors over the contexts and rescale the sum to L2 norm modL (7 by default)."),
    (
        "Plug in",
        "the result lives in the word-embedding space, so it can be fed to the model as an input: \"Most people with COVID-19 have…\" becomes \"Most people with COVID-19 ( COVID-19 ) have…\", where the bracketed copy is one input position whose embedding is the entity vector.",
    ),
    (
        "Explore",
        "entities used in similar contexts get similar vectors. The Map lays them out in 2-D (t-SNE or UMAP), coloured by type, to show whether the vectors group entities by kind; Compare sets a table from another corpus or model beside this one and shows whose nearest neighbours changed.",
    ),
];

pub fn how_pelt_works(ui: &mut Ui) {
    for (i, (title, text)) in HOW_PELT_WORKS.iter().enumerate() {
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 4.0;
            ui.label(RichText::new(format!("{}. {title}:", i + 1)).strong());
            ui.label(*text);
        });
        ui.add_space(2.0);
    }
    hint(
        ui,
        "No training is involved: a table for a new domain is one pass of the model over its corpus, and the model itself stays unchanged. Ye et al., \"A Simple but Effective Pluggable Entity Lookup Table for Pre-trained Language Models\", ACL 2022.",
    );
}

pub fn panel(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    // Edits go to a copy, handed back as one command after the frame.
    let mut project = app.project.clone();
    egui::ScrollArea::vertical()
        .id_salt("project_scroll")
        .show(ui, |ui| {
            ui.add_space(4.0);
            let how = egui::CollapsingHeader::new(RichText::new("How PELT works").strong())
                .open(Some(app.state.show_how))
                .show(ui, how_pelt_works);
            if how.header_response.clicked() {
                let mut state = app.state.clone();
                state.show_how = !state.show_how;
                out.push(Command::SetState(Box::new(state)));
            }
            ui.separator();
            project_section(app, &mut project, ui, out);
            ui.separator();
            parameters(app, &mut project, ui);
            ui.separator();
            build_section(app, ui, out);
            ui.add_space(8.0);
        });
    if project != app.project {
        out.push(Command::EditProject(Box::new(project)));
    }
}

/// A label with a hover text; returns its id so an input can be labelled by it.
/// The models of the local Hugging Face cache (listed when the menu opens, kept for a few
/// seconds), the bundled model, and a folder; what cannot be loaded is greyed out with why.
fn model_picker(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    use pelt::model::hub;
    use std::sync::Arc;
    ui.menu_button("Cached…", |ui| {
        let id = egui::Id::unique("cached_models");
        let now = ui.input(|i| i.time);
        let cached: Option<(f64, Arc<Vec<hub::CachedModel>>)> = ui.data(|d| d.get_temp(id));
        let list = match cached {
            Some((at, l)) if now - at < 5.0 => l,
            _ => {
                let l = Arc::new(hub::list_cached(&hub::cache_root()));
                ui.data_mut(|d| d.insert_temp(id, (now, l.clone())));
                l
            }
        };
        ui.weak(format!(
            "Hugging Face cache: {}",
            hub::cache_root().display()
        ));
        if ui.button("bundled (splade-tiny)").clicked() {
            out.push(Command::SetModel(None));
            ui.close();
        }
        if list.is_empty() {
            ui.weak("no models cached (download one with `hf download ID`)");
        }
        for m in list.iter() {
            let text = format!(
                "{}  ·  {}, hidden {}, {} layers, {:.0} MB",
                m.id,
                m.architecture,
                m.hidden_size,
                m.layers,
                m.size as f64 / 1e6
            );
            let current = app.project.model_id.as_deref() == Some(m.id.as_str());
            let r = ui.add_enabled(m.problem.is_none(), egui::Button::selectable(current, text));
            match &m.problem {
                Some(why) => {
                    r.on_disabled_hover_text(format!("cannot be loaded: {why}"));
                }
                None => {
                    if r.clicked() {
                        out.push(Command::SetModelId(m.id.clone()));
                        ui.close();
                    }
                }
            }
        }
        if ui.button("Choose folder…").clicked() {
            out.push(Command::ChooseModelDialog);
            ui.close();
        }
    })
    .response
    .on_hover_text("Pick a model from the local Hugging Face cache");
}

fn field_label(ui: &mut Ui, text: &str, hover: &str) -> egui::Id {
    ui.label(text).on_hover_text(hover).id
}

fn project_section(app: &Session, p_edit: &mut Project, ui: &mut Ui, out: &mut Vec<Command>) {
    section(ui, "Project");
    egui::Grid::new("project_grid").num_columns(2).spacing([8.0, 6.0]).show(ui, |ui| {
        let id = field_label(ui, "Name", "A name for this project (used for default file names)");
        ui.add(egui::TextEdit::singleline(&mut p_edit.name).desired_width(190.0)).labelled_by(id);
        ui.end_row();

        ui.label("File").on_hover_text("Where the project is saved (RON)");
        match &app.project_path {
            Some(p) => ui.label(file_name(p)).on_hover_text(p.display().to_string()),
            None => ui.weak("not saved yet"),
        };
        ui.end_row();

        ui.label("Model").on_hover_text(
            "A local Hugging Face masked-LM folder (config.json, tokenizer, weights). Drop a folder onto the window to use it.",
        );
        ui.vertical(|ui| {
            ui.horizontal(|ui| {
                let name = match (&app.project.model_id, &app.project.model) {
                    (None, None) => "bundled (splade-tiny)".into(),
                    _ => app.project.model_label(),
                };
                ui.label(name).on_hover_text(app.project.model_dir().display().to_string());
                model_picker(app, ui, out);
                if ui.small_button("Choose…").on_hover_text("Choose a model folder").clicked() {
                    out.push(Command::ChooseModelDialog);
                }
                if (app.project.model.is_some() || app.project.model_id.is_some())
                    && ui.small_button("Bundled").on_hover_text("Use the bundled tiny BERT").clicked()
                {
                    out.push(Command::SetModel(None));
                }
            });
            match (&app.model, app.model_loading()) {
                (Some(m), _) => {
                    ui.label(
                        RichText::new(format!("{} · {} layers · hidden {} · {} · {}", m.family, m.layers, m.hidden, m.device, m.dtype))
                            .weak()
                            .size(12.0),
                    )
                    .on_hover_text(format!(
                        "{}\nvocabulary {} tokens, mask token {}\nweights sha256 {}",
                        m.dir.display(),
                        m.vocab,
                        m.mask_token,
                        m.sha256
                    ));
                }
                (None, true) => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.weak("loading…");
                    });
                }
                (None, false) => {
                    ui.colored_label(widgets::WARN, "not loaded");
                }
            }
        });
        ui.end_row();

        ui.label("Corpus").on_hover_text(
            "Text the contexts are taken from: .txt (one or more sentences a line), .jsonl (a \"text\" field), FewRel .json; optionally .gz. Drop files onto the window to add them.",
        );
        ui.vertical(|ui| {
            let mut remove = None;
            for (i, c) in app.project.corpus.iter().enumerate() {
                ui.horizontal(|ui| {
                    let color = if c.exists() { ui.visuals().text_color() } else { widgets::BAD };
                    ui.colored_label(color, file_name(c)).on_hover_text(c.display().to_string());
                    if ui.small_button("×").on_hover_text(format!("Remove {}", file_name(c))).clicked() {
                        remove = Some(i);
                    }
                });
            }
            if let Some(i) = remove {
                out.push(Command::RemoveCorpus(i));
            }
            if app.project.corpus.is_empty() {
                ui.colored_label(widgets::WARN, "no corpus files");
            }
            if ui.small_button("Add files…").clicked() {
                out.push(Command::AddCorpusDialog);
            }
        });
        ui.end_row();

        ui.label("Entities").on_hover_text(
            "The entity list: .tsv (id<TAB>name<TAB>alias|alias…) or .txt (one name a line). Drop a .tsv onto the window to use it.",
        );
        ui.horizontal(|ui| {
            match &app.project.entities {
                Some(p) => {
                    let n = app.entity_list.as_ref().map(|l| format!(" ({})", l.len())).unwrap_or_default();
                    let color = if p.exists() { ui.visuals().text_color() } else { widgets::BAD };
                    ui.colored_label(color, format!("{}{n}", file_name(p))).on_hover_text(p.display().to_string());
                }
                None => {
                    ui.colored_label(widgets::WARN, "none");
                }
            }
            if ui.small_button("Choose…").on_hover_text("Choose an entity list").clicked() {
                out.push(Command::ChooseEntitiesDialog);
            }
        });
        ui.end_row();

        ui.label("Table").on_hover_text("Where Build writes the table (.safetensors); a checkpoint .ckpt sits beside it while building");
        ui.horizontal(|ui| {
            match &app.project.table {
                Some(p) => ui.label(file_name(p)).on_hover_text(p.display().to_string()),
                None => ui.weak("not saved automatically"),
            };
            let outside = app
                .project_path
                .as_ref()
                .map(|pp| app.project.outputs_outside(pp))
                .unwrap_or_default();
            if !outside.is_empty() {
                ui.colored_label(widgets::WARN, "outside the project's folder").on_hover_text(
                    "Build will ask before it writes there the first time: a shared project can name any path",
                );
            }
            if ui.small_button("Choose…").on_hover_text("Choose where Build writes the table").clicked() {
                out.push(Command::ChooseTableOutDialog);
            }
        });
        ui.end_row();
    });
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        if ui
            .button("Open…")
            .on_hover_text("Open a project (.ron)  Ctrl+O")
            .clicked()
        {
            out.push(Command::OpenProjectDialog);
        }
        let save = if app.project_dirty { "Save *" } else { "Save" };
        if ui
            .button(save)
            .on_hover_text("Save the project  Ctrl+S")
            .clicked()
        {
            out.push(Command::SaveProject);
        }
        if ui.button("Save as…").clicked() {
            out.push(Command::SaveProjectAs);
        }
    });
    let recent: Vec<_> = app
        .state
        .recent
        .iter()
        .filter(|p| Some(*p) != app.project_path.as_ref())
        .cloned()
        .collect();
    if !recent.is_empty() {
        egui::CollapsingHeader::new("Recent projects")
            .id_salt("recent_projects")
            .show(ui, |ui| {
                for p in recent {
                    if ui
                        .link(file_name(&p))
                        .on_hover_text(p.display().to_string())
                        .clicked()
                    {
                        out.push(Command::OpenProject(p));
                    }
                }
            });
    }
}

fn parameters(app: &Session, p: &mut Project, ui: &mut Ui) {
    section(ui, "Parameters");
    egui::Grid::new("params_grid").num_columns(2).spacing([12.0, 5.0]).show(ui, |ui| {
        let o = &mut p.options;
        let id = field_label(
            ui,
            "K (contexts)",
            "At most K sentences per entity are sampled (uniformly, seeded) and summed. More contexts give a steadier vector; the paper uses up to 256.",
        );
        ui.add(egui::DragValue::new(&mut o.k).range(1..=100_000)).labelled_by(id);
        ui.end_row();
        let id = field_label(
            ui,
            "max_len (tokens)",
            "Each context is cut to a window of at most this many tokens around the mention before it is fed to the model.",
        );
        ui.add(egui::DragValue::new(&mut o.max_len).range(3..=512)).labelled_by(id);
        ui.end_row();
        let id = field_label(ui, "seed", "Seed of the context sampling: the same seed gives the same table.");
        ui.add(egui::DragValue::new(&mut o.seed)).labelled_by(id);
        ui.end_row();
        let id = field_label(
            ui,
            "norm (modL)",
            "L2 norm of the stored vectors. Word embeddings of BERT have norms around 1–2 but the paper finds ~7 works best for plugged entities. Only a rescaling: change it any time (Norm tab), no rebuild needed.",
        );
        ui.add(egui::DragValue::new(&mut o.norm).range(0.1..=50.0).speed(0.05).max_decimals(2)).labelled_by(id);
        ui.end_row();
        let id = field_label(ui, "batch", "Contexts per forward pass of the model on the CPU (speed/memory only; does not change the result).");
        ui.add(egui::DragValue::new(&mut o.batch).range(1..=4096)).labelled_by(id);
        ui.end_row();
        let id = field_label(
            ui,
            "batch tokens",
            "On a GPU, batches are cut by tokens instead: as many contexts (sorted by length) as fit in this many token rows, padding included. 0 uses the contexts per batch there too.",
        );
        ui.add(egui::DragValue::new(&mut o.batch_tokens).range(0..=1_048_576).speed(64)).labelled_by(id);
        ui.end_row();
        ui.label("device").on_hover_text("Where the model runs; auto takes a GPU when this build has CUDA/Metal support");
        egui::ComboBox::from_id_salt("device_combo")
            .selected_text(p.device.to_string())
            .show_ui(ui, |ui| {
                for d in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda, DeviceChoice::Metal] {
                    ui.selectable_value(&mut p.device, d, d.to_string());
                }
            })
            .response
            .on_hover_text("device");
        ui.end_row();
        ui.label("dtype").on_hover_text("Precision of the model: auto is bf16 on CUDA GPUs that run it (compute capability 8.0 or newer) and f32 elsewhere");
        egui::ComboBox::from_id_salt("dtype_combo")
            .selected_text(p.dtype.to_string())
            .show_ui(ui, |ui| {
                for d in DtypeChoice::ALL {
                    ui.selectable_value(&mut p.dtype, d, d.to_string());
                }
            })
            .response
            .on_hover_text("dtype");
        ui.end_row();
        ui.label("mentions").on_hover_text(
            "Which spans of the corpus are an entity's mentions. links: only the spans the corpus links to the entity's id (Wikipedia anchors, PubTator annotations, FewRel h/t, JSON Lines links), as PELT does. names: matches of the entity's name and aliases. both: links, plus name matches that overlap no link. auto: links when the corpus carries links, else names.",
        );
        let mode = &mut p.options.mentions;
        egui::ComboBox::from_id_salt("mentions_combo")
            .selected_text(mode.as_str())
            .show_ui(ui, |ui| {
                for m in pelt::contexts::MentionMode::ALL {
                    ui.selectable_value(mode, m, m.as_str());
                }
            })
            .response
            .on_hover_text("mention mode");
        ui.end_row();
        ui.label("case-sensitive").on_hover_text("Match entity names with exact case (default: ASCII case folded)");
        ui
            .checkbox(&mut p.options.case_sensitive, "")
            .on_hover_text("case-sensitive matching")
            ;
        ui.end_row();
    });
    if let Some(m) = &app.model {
        let plan = p.options.batch_plan(m.packs_tokens);
        ui.label(
            RichText::new(format!("in use: {} · {} · batches of {plan}", m.device, m.dtype))
                .weak()
                .size(12.0),
        )
        .on_hover_text(if m.packs_tokens {
            "The CPU runs packed batches (no padding) of a fixed number of contexts"
        } else {
            "Padded batches (the GPU path): contexts sorted by length, as many as fit in the token budget"
        });
    }
    if let Some(why) = app.stale_reason() {
        ui.colored_label(widgets::WARN, format!("{why}: Build again to apply them."));
    }
}

fn build_section(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    section(ui, "Build the table");
    let running = app.building();
    ui.horizontal(|ui| {
        let big = app.table.is_none() && !running;
        let label = RichText::new("Build")
            .size(if big { 17.0 } else { 14.0 })
            .strong();
        let mut button = egui::Button::new(label).min_size(egui::vec2(
            if big { 110.0 } else { 70.0 },
            if big { 32.0 } else { 22.0 },
        ));
        if big {
            button = button.fill(Color32::from_rgb(40, 110, 200));
        }
        if ui
            .add_enabled(!running, button)
            .on_hover_text("Run the model over the corpus and build the table from scratch")
            .clicked()
        {
            out.push(Command::Build { resume: false });
        }
        if ui
            .add_enabled(
                !running && app.build.checkpoint,
                egui::Button::new("Resume"),
            )
            .on_hover_text("Continue an interrupted build from its checkpoint")
            .on_disabled_hover_text("Resume needs the checkpoint of a cancelled build")
            .clicked()
        {
            out.push(Command::Build { resume: true });
        }
        if ui
            .add_enabled(
                running && !app.build.cancelling,
                egui::Button::new("Cancel"),
            )
            .on_hover_text(
                "Stop after the current batch; a checkpoint is written so the build can be resumed",
            )
            .clicked()
        {
            out.push(Command::CancelBuild);
        }
    });
    if running {
        progress(app, ui);
    } else if let Some(super::session::Cancelled {
        done,
        total,
        checkpoint: ckpt,
    }) = &app.build.cancelled
    {
        if *total > 0 {
            ui.add(
                egui::ProgressBar::new(*done as f32 / *total as f32)
                    .text(format!("cancelled at {done}/{total} contexts")),
            );
        }
        ui.colored_label(
            widgets::WARN,
            if ckpt.is_some() {
                "Cancelled. Resume continues where it stopped."
            } else {
                "Cancelled. Nothing to resume: Build starts again."
            },
        );
    }
    if let Some(r) = &app.build.report {
        ui.add_space(4.0);
        ui.label(RichText::new("Last build").strong());
        ui.label(format!(
            "{} contexts from {} sentences · {:.0} contexts/s · {}",
            r.contexts,
            r.sentences,
            r.contexts_per_sec,
            format_secs(app.build.elapsed_secs)
        ));
        let found = app
            .table
            .as_ref()
            .map(|t| t.len() - r.not_found.len())
            .unwrap_or(0);
        ui.label(format!(
            "{found} entities found, {} not found",
            r.not_found.len()
        ));
        if !r.device.is_empty() {
            ui.weak(format!(
                "on {} · {} · batches of {} · {} host threads",
                r.device, r.dtype, r.batch, r.threads
            ));
        }
        for stage in &r.stages {
            ui.label(RichText::new(stage.describe()).size(11.5).weak());
        }
        if r.resumed_from > 0 {
            ui.weak(format!("resumed from context {}", r.resumed_from));
        }
        if r.read.skipped_lines > 0 {
            ui.colored_label(
                widgets::WARN,
                format!(
                    "{} corpus lines skipped (see Overview)",
                    r.read.skipped_lines
                ),
            );
        }
        if r.skipped_contexts > 0 {
            ui.colored_label(
                widgets::WARN,
                format!(
                    "{} contexts skipped (mention not tokenizable)",
                    r.skipped_contexts
                ),
            );
        }
    }
    ui.add_space(4.0);
    next_step_hint(app, ui);
}

fn progress(app: &Session, ui: &mut Ui) {
    match &app.build.progress {
        Some(p) => {
            let bar = match p.fraction() {
                Some(f) => {
                    egui::ProgressBar::new(f).text(format!("{} {:.0}%", p.phase.label(), f * 100.0))
                }
                None => egui::ProgressBar::new(0.0).text(p.phase.label()),
            };
            ui.add(bar);
            ui.label(RichText::new(p.describe()).size(12.0));
        }
        None => {
            ui.horizontal(|ui| {
                widgets::working_dot(ui);
                ui.label(if app.build.resuming {
                    "resuming…"
                } else {
                    "loading model and corpus…"
                });
            });
        }
    }
    if app.build.cancelling {
        ui.weak("cancelling after the current batch…");
    }
}

/// One line that says what to do next.
fn next_step_hint(app: &Session, ui: &mut Ui) {
    let text = if app.building() {
        "The window stays usable while the model works."
    } else if app.project.corpus.is_empty() || app.project.entities.is_none() {
        "Next: add a corpus and an entity list (buttons above, or drop files onto the window)."
    } else if app.table.is_none() {
        "Next: press Build to compute one vector per entity (a few seconds for the demo)."
    } else if app.selected.is_none() {
        "Next: pick an entity in the list to inspect its contexts, neighbours and norm."
    } else {
        "Try the Preview tab: type a sentence with [MASK] and see what a plugged entity changes."
    };
    ui.label(RichText::new(format!("» {text}")).color(ui.visuals().hyperlink_color));
}
