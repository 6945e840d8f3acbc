//! The command line: hook stages and the operator's subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// OCI hook: install the CA certificates into the container's rootfs (state JSON on stdin).
    #[command(name = "createRuntime", alias = "prestart")]
    CreateRuntime,

    /// OCI hook: undo what createRuntime installed (state JSON on stdin).
    #[command(name = "poststop")]
    Poststop,

    /// Install the CA certificates into a root filesystem, journaling every change.
    Install {
        /// The root filesystem directory.
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        /// A CA certificate file (PEM or DER) or a directory of them; repeatable.
        #[arg(long, value_name = "PATH", required = true)]
        certs: Vec<PathBuf>,
        /// The journal file to write (outside the rootfs); uninstall needs it.
        #[arg(long, value_name = "FILE")]
        journal: PathBuf,
        /// The container's environment (`KEY=value`, repeatable), e.g. for `JAVA_HOME`.
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
    },

    /// Undo an install, using its journal. No journal is not an error.
    Uninstall {
        /// The root filesystem directory.
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        /// The journal the install wrote.
        #[arg(long, value_name = "FILE")]
        journal: PathBuf,
    },

    /// Print, as JSON, the distribution family, trust stores and the changes an install would make.
    Detect {
        /// The root filesystem directory.
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        /// CA certificates to plan for (default: the configuration's `certs`).
        #[arg(long, value_name = "PATH")]
        certs: Vec<PathBuf>,
    },

    /// Roll back and remove journals in the state directory whose container no longer exists.
    ///
    /// A container no longer exists when the rootfs recorded in its journal is gone, or when the
    /// bundle directory recorded beside the journal (`<id>.json`) is gone.
    Gc,

    /// Print a CDI spec (kind `cacerts-hook.dev/ca`, device `default`) that runs this hook.
    Cdi {
        /// Path of the installed hook binary, as the runtime will run it.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_HOOK_PATH)]
        hook_path: PathBuf,
    },
}
