//! `pelt`: the workbench window when run without arguments, the command line otherwise.

mod bench;
mod cli;
#[cfg(feature = "gui")]
mod ui;

use clap::Parser;

fn main() {
    if std::env::args_os().len() > 1 {
        let cli = cli::Cli::parse();
        if let Err(e) = cli::run(cli) {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    #[cfg(feature = "gui")]
    {
        if let Err(e) = ui::run() {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
    #[cfg(not(feature = "gui"))]
    {
        eprintln!("this build has no GUI (built without the `gui` feature); run `pelt --help` for the command line");
        std::process::exit(2);
    }
}
