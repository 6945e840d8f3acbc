//! The command line: hook stages and the operator's subcommands.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};

/// Where the hook binary is installed by default; what `cdi` points the runtime at.
pub const DEFAULT_HOOK_PATH: &str = "/usr/libexec/oci/hooks.d/cacerts-hook";

/// Makes containers trust the organisation's CA certificates, and leaves no trace afterwards.
///
/// As an OCI hook, the runtime runs `cacerts-hook createRuntime` (or `prestart`) before the
/// container starts and `cacerts-hook poststop` after it is deleted, with the container state
/// JSON on standard input. The other subcommands are for operators and build engines.
///
/// Exit codes: 0 success; 1 error; 2 usage error. In hook mode with `on_error = "continue"` (the
/// default) errors are logged and the exit code is always 0.
#[derive(Debug, Parser)]
#[command(name = "cacerts-hook", version, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (TOML). A missing file means the defaults.
    /// [default: /etc/cacerts-hook/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where log lines go, overriding the configuration's `log` (also when the configuration
    /// cannot be read): "syslog", "journald", "stderr" or an absolute file path.
    #[arg(long, global = true, value_name = "TARGET")]
    pub log: Option<crate::config::LogTarget>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log target: `--log` if given, else the configuration's.
    pub fn log_target(&self, config: &crate::config::Config) -> crate::config::LogTarget {
        self.log.clone().unwrap_or_else(|| config.log.clone())
    }

    /// The configuration file to read.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH))
    }
}

/// The subcommands. Each one's arguments are built only when it is the one run
/// ([`Deferred`]): the hook starts twice per container, and building every subcommand's
/// arguments, with the global options copied into each, was most of what parsing cost.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// OCI hook: install the CA certificates into the container's rootfs (state JSON on stdin).
    #[command(name = "createRuntime", alias = "prestart")]
    CreateRuntime,

    /// OCI hook: undo what createRuntime installed (state JSON on stdin).
    #[command(name = "poststop")]
    Poststop,

    /// Install the CA certificates into a root filesystem, journaling every change.
    Install(Deferred<InstallArgs>),

    /// Undo an install, using its journal. No journal is not an error.
    Uninstall(Deferred<UninstallArgs>),

    /// Print, as JSON, the distribution family, trust stores and the changes an install would make.
    Detect(Deferred<DetectArgs>),

    /// Roll back and remove journals in the state directory whose container no longer exists.
    ///
    /// A container no longer exists when the rootfs recorded in its journal is gone, or when the
    /// bundle directory recorded beside the journal (`<id>.json`) is gone.
    Gc,

    /// Print a CDI spec (kind `cacerts-hook.dev/ca`, device `default`) that runs this hook.
    Cdi(Deferred<CdiArgs>),
}

// `install`'s arguments (their help is the variant's: a doc comment here would replace it).
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The root filesystem directory.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// A CA certificate file (PEM or DER) or a directory of them; repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub certs: Vec<PathBuf>,
    /// The journal file to write (outside the rootfs); uninstall needs it.
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,
    /// The container's environment (`KEY=value`, repeatable), e.g. for `JAVA_HOME`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

// `uninstall`'s arguments.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The root filesystem directory.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// The journal the install wrote.
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,
}

// `detect`'s arguments.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// The root filesystem directory.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// CA certificates to plan for (default: the configuration's `certs`).
    #[arg(long, value_name = "PATH")]
    pub certs: Vec<PathBuf>,
}

// `cdi`'s arguments.
#[derive(Debug, Args)]
pub struct CdiArgs {
    /// Path of the installed hook binary, as the runtime will run it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_HOOK_PATH)]
    pub hook_path: PathBuf,
}

/// A subcommand's arguments `T`, added to its `clap::Command` only when clap builds that
/// subcommand: when it is the one given, or for help that shows it.
#[derive(Debug)]
pub struct Deferred<T>(pub T);

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
}

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// A hook stage parses its command line without building the other subcommands' arguments.
    #[test]
    fn subcommand_arguments_are_built_only_for_the_subcommand_run() {
        let cli = Cli::command();
        for name in ["install", "uninstall", "detect", "cdi"] {
            let sub = cli.find_subcommand(name).expect(name);
            assert_eq!(sub.get_arguments().count(), 0, "{name} built before it was run");
        }
        let cli = Cli::try_parse_from([
            "cacerts-hook",
            "install",
            "--rootfs",
            "/r",
            "--certs",
            "/c",
            "--journal",
            "/j",
            "--config",
            "/f",
        ])
        .unwrap();
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("/f")));
        let Command::Install(Deferred(args)) = cli.command else {
            panic!("not install: {cli:?}");
        };
        assert_eq!(args.certs, [PathBuf::from("/c")]);
        assert_eq!((args.rootfs, args.journal), (PathBuf::from("/r"), PathBuf::from("/j")));
    }
}
