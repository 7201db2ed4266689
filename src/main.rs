//! `pelt`: the workbench window when run without arguments, the command line otherwise.

mod bench;
mod cli;
mod scale;
#[cfg(feature = "gui")]
mod ui;

use clap::Parser;

/// glibc's malloc hands blocks of 128 KiB or more back to the system when they are freed (it
/// raises that bound as such blocks are freed, but trims the top of its heap all the same), so
/// the encoder's activations, megabytes per layer and batch, came back as fresh pages that
/// the kernel zeroes on first touch: a fifth of the encoding time of a build on the bundled
/// model went to page faults. Kept in the heap (up to 256 MiB of it free) they are reused. The
/// peak memory does not change: the same blocks are alive at the peak either way.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two of malloc's thresholds, before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() {
    keep_freed_memory();
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
