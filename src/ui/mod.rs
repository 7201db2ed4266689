//! The workbench window (placeholder until the panels land).

pub fn run() -> anyhow::Result<()> {
    eframe::run_native(
        "PELT Workbench",
        eframe::NativeOptions::default(),
        Box::new(|_cc| Ok(Box::new(App))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

struct App;

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        ui.heading("PELT Workbench");
    }
}
