//! `cacerts-hook`: a thin shell over `cacerts-core`.
//!
//! argv -> configuration -> logging -> one library call -> exit code. See `docs/hook.md`.

#![forbid(unsafe_code)]

/// The musl build's allocator. musl's own maps every block above a few pages with `mmap` and
/// unmaps it at its free, so the 64 KiB buffer of each journal line, for one, cost
/// two system calls and a page fault per page touched, every time; dlmalloc keeps freed memory
/// for the next allocation, as glibc's allocator does (BENCHMARKS.md: about 0.9x the time of
/// musl's allocator for one CA, 0.85x for 1,000).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

mod cli;
mod config;
mod gc;
mod hook;
mod log;
mod oci;

use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use cacerts_core::installer::{self, Settings};
use cacerts_core::{uninstall_with, ContainerRoot, Report};
use clap::Parser;
use serde_json::json;

use crate::cli::{CdiArgs, Cli, Command, Deferred, DetectArgs, InstallArgs, UninstallArgs};
use crate::config::{Config, OnError};
use crate::hook::{Outcome, Stage};
use crate::log::{quote, Level, Logger};

/// The most a hook invocation may take before it gives up (runtimes have no default timeout).
/// Shorter than the 10 s `timeout` of the shipped registrations (hooks.d, CDI, containerd), so
/// that the hook gives up, logs and exits 0 under `on_error = "continue"` before a runtime kills
/// it, which would fail the container start.
const HOOK_DEADLINE: Duration = Duration::from_secs(8);

/// Exit code of an error.
const EXIT_ERROR: u8 = 1;
/// Exit code of a usage error.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::CreateRuntime => hook_main(&cli, Stage::CreateRuntime),
        Command::Poststop => hook_main(&cli, Stage::Poststop),
        _ => match run(&cli) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("cacerts-hook: error: {e:#}");
                ExitCode::from(EXIT_ERROR)
            }
        },
    }
}

/// Hook mode: never blocks past the deadline, logs one line, and exits 0 unless
/// `on_error = "fail"`.
fn hook_main(cli: &Cli, stage: Stage) -> ExitCode {
    let start = Instant::now();
    let (config, config_error) = match Config::load(&cli.config_path()) {
        Ok(c) => (c, None),
        // The configuration is unreadable, so its on_error is unknown: behave as the default
        // (continue), so that a broken file never stops every container on the host.
        Err(e) => (Config::default(), Some(e)),
    };
    let logger = Logger::new(cli.log_target(&config));
    // A bug must not turn into a failed container start under on_error=continue, with or
    // without unwinding (release builds abort on panic): log it and exit from the panic hook.
    let panic_logger = logger.clone();
    let on_error = config.on_error;
    std::panic::set_hook(Box::new(move |info| {
        // Only one thread reports. A panic on the thread that is reporting is logged here; one
        // on the other thread while the first reports waits for the process to exit.
        if !IS_REPORTER.get() && !claim_report() {
            loop {
                std::thread::park();
            }
        }
        let msg = format!("internal error: {info}");
        panic_logger.line(
            Level::Error,
            &format!("stage={} result=error error={}", stage.name(), quote(&msg)),
        );
        std::process::exit(i32::from(error_exit(on_error, &msg)));
    }));
    let outcome: hook::SharedOutcome = Arc::new(Mutex::new(Outcome::default()));

    let result = match config_error {
        Some(e) => Err(e),
        None => {
            // The stage runs on this thread. A watchdog gives up for it at the deadline: it logs
            // and exits the process, whatever this thread is waiting in. Whichever of the two
            // finishes first reports; when the stage does, the process exits with the watchdog
            // still asleep, which costs nothing (no thread to wake, join or unmap).
            let (watch_outcome, watch_logger) = (Arc::clone(&outcome), logger.clone());
            std::thread::spawn(move || {
                std::thread::sleep(HOOK_DEADLINE);
                if !claim_report() {
                    return;
                }
                let gave_up = Err(anyhow!(
                    "gave up after {} s; a journal left behind is rolled back by the next run or by gc",
                    HOOK_DEADLINE.as_secs()
                ));
                let code = report(stage, start, &watch_outcome, &watch_logger, on_error, gave_up);
                std::process::exit(i32::from(code));
            });
            let r = hook::run(stage, &config, std::io::stdin(), &outcome);
            if !claim_report() {
                // The watchdog is reporting, and exits the process.
                loop {
                    std::thread::park();
                }
            }
            r
        }
    };
    ExitCode::from(report(stage, start, &outcome, &logger, on_error, result))
}

/// Set by the first of the stage's thread, its watchdog and the panic hook to report.
static REPORTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread won [`claim_report`].
    static IS_REPORTER: Cell<bool> = const { Cell::new(false) };
}

/// Claims the one report of a hook invocation for this thread; false if another thread has it.
fn claim_report() -> bool {
    if REPORTED.swap(true, Ordering::SeqCst) {
        return false;
    }
    IS_REPORTER.set(true);
    true
}

/// Logs the stage's one line and returns its exit code: 0, or [`EXIT_ERROR`] for an error under
/// `on_error = "fail"` (also said on standard error).
fn report(
    stage: Stage,
    start: Instant,
    outcome: &hook::SharedOutcome,
    logger: &Logger,
    on_error: OnError,
    result: Result<()>,
) -> u8 {
    let o = outcome.lock().map(|o| o.clone()).unwrap_or_default();
    let mut line = format!(
        "stage={} id={} family={} certs={} changes={} dropped={} recovered={} duration_ms={}",
        stage.name(),
        quote(o.id.as_deref().unwrap_or("-")),
        o.family.as_deref().unwrap_or("-"),
        o.certs,
        o.changes,
        o.dropped,
        o.recovered,
        start.elapsed().as_millis(),
    );
    if !o.skipped.is_empty() {
        line.push_str(&format!(" skipped_certs={}", quote(&o.skipped.join("; "))));
    }
    if let Some(note) = o.note {
        line.push_str(&format!(" note={}", quote(note)));
    }
    match result {
        Ok(()) => {
            line.push_str(" result=ok");
            logger.line(Level::Info, &line);
            0
        }
        Err(e) => {
            let msg = format!("{e:#}");
            line.push_str(&format!(" result=error error={}", quote(&msg)));
            logger.line(Level::Error, &line);
            error_exit(on_error, &msg)
        }
    }
}

/// The exit code of a stage that failed with `msg` (already logged): 0 under
/// `on_error = "continue"`; under `"fail"`, [`EXIT_ERROR`], with `msg` on standard error.
fn error_exit(on_error: OnError, msg: &str) -> u8 {
    match on_error {
        OnError::Continue => 0,
        OnError::Fail => {
            eprintln!("cacerts-hook: error: {msg}");
            EXIT_ERROR
        }
    }
}

/// The operator's subcommands.
fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::CreateRuntime | Command::Poststop => unreachable!("handled by hook_main"),
        Command::Install(Deferred(InstallArgs {
            rootfs,
            certs,
            journal,
            env,
        })) => {
            let config = Config::load(&cli.config_path())?;
            let loaded = cacerts_core::certs::load(certs);
            for s in &loaded.skipped {
                eprintln!("cacerts-hook: warning: skipped {}: {}", s.source.display(), s.reason);
            }
            if loaded.certs.is_empty() {
                bail!("no usable CA certificate in the given --certs");
            }
            let root = ContainerRoot::open(rootfs)?;
            let mut settings = Settings::default();
            settings.create_store_when_none = config.create_store_when_none;
            settings.env = env.clone();
            let (detection, report) =
                installer::install_certs(&root, &loaded.certs, &settings, journal, &hook::options_for(journal))?;
            if report.recovered {
                println!("rolled back the earlier install recorded in {}", journal.display());
            }
            println!("family {}", hook::family_name(&detection.family));
            for s in &detection.skipped {
                eprintln!("cacerts-hook: warning: left alone: {s}");
            }
            print_report(&report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Uninstall(Deferred(UninstallArgs { rootfs, journal })) => {
            let root = ContainerRoot::open(rootfs)?;
            let report = uninstall_with(&root, journal, &hook::options_for(journal))?;
            print_report(&report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Detect(Deferred(DetectArgs { rootfs, certs })) => {
            let config = Config::load(&cli.config_path())?;
            let inputs: Vec<PathBuf> = if certs.is_empty() {
                config.certs.clone()
            } else {
                certs.clone()
            };
            let loaded = cacerts_core::certs::load(&inputs);
            let root = ContainerRoot::open(rootfs)?;
            let mut settings = Settings::default();
            settings.create_store_when_none = config.create_store_when_none;
            let (d, plan) = installer::plan(&root, &loaded.certs, &settings)?;
            let out = json!({
                "family": hook::family_name(&d.family),
                "id": d.id,
                "version": d.version,
                "stores": d.stores,
                "certs": loaded.certs.iter().map(|c| json!({
                    "name": c.name, "subject": c.subject, "source": c.source,
                })).collect::<Vec<_>>(),
                "skipped": loaded.skipped.iter().map(|s| json!({
                    "source": s.source, "reason": s.reason,
                })).collect::<Vec<_>>(),
                "changes": plan.changes.iter().map(|c| c.summary()).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc => {
            let config = Config::load(&cli.config_path())?;
            let logger = Logger::new(cli.log_target(&config));
            let summary = gc::run(&config.state_dir, &mut std::io::stdout())?;
            let level = if summary.errors.is_empty() {
                Level::Info
            } else {
                Level::Error
            };
            logger.line(
                level,
                &format!(
                    "stage=gc collected={} kept={} errors={}",
                    summary.collected,
                    summary.kept,
                    summary.errors.len()
                ),
            );
            if summary.errors.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("{} journal(s) could not be collected", summary.errors.len())
            }
        }
        Command::Cdi(Deferred(CdiArgs { hook_path })) => {
            let args_for = |stage: &str| {
                let mut args = vec![hook_path.display().to_string()];
                if let Some(c) = &cli.config {
                    args.push("--config".into());
                    args.push(c.display().to_string());
                }
                args.push(stage.to_owned());
                args
            };
            let hooks: Vec<_> = ["createRuntime", "poststop"]
                .iter()
                .map(|stage| json!({"hookName": stage, "path": hook_path, "args": args_for(stage), "timeout": 10}))
                .collect();
            let spec = json!({
                "cdiVersion": "0.6.0",
                "kind": "cacerts-hook.dev/ca",
                "devices": [{"name": "default", "containerEdits": {"hooks": hooks}}],
            });
            println!("{}", serde_json::to_string_pretty(&spec)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(r: &Report) {
    use std::fmt::Write as _;
    // One write for the whole report: a thousand CAs are a thousand lines.
    let mut text = String::new();
    if r.recovered {
        text.push_str("recovered a journal left by an earlier run\n");
    }
    for (word, list) in [
        ("created", &r.created),
        ("edited", &r.edited),
        ("removed", &r.removed),
        ("restored", &r.restored),
        ("stripped", &r.stripped),
    ] {
        for p in list {
            let _ = writeln!(text, "{word} {}", p.display());
        }
    }
    for (p, why) in &r.kept {
        let _ = writeln!(text, "kept {}: {why}", p.display());
    }
    print!("{text}");
}
