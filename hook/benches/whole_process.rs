//! Whole-process benchmarks: what `cacerts-hook` costs as the operator and the runtime see it (a
//! process started and waited for), side by side with the distributions' own tool, a plain `cp`,
//! and containers started without the hook.
//!
//! Run by `scripts/bench` (`cargo bench -p cacerts-hook --bench whole_process -- [SECTION...]`,
//! as root). Sections: `whole` (install and uninstall of one CA on three layouts, and on overlay
//! roots with a fresh upper layer, against `update-ca-certificates` and `cp`), `runc` (a trivial
//! container with and without the hooks), `scale` (1 to 1,000 CAs, bundles of 150 to 15,000
//! certificates), `concurrency` (64 containers at once). No argument runs them all. `BENCH_RUNS`
//! (default 30) is the number of runs of every measured command; compared commands run
//! interleaved, in a rotating order, so that the noise of a shared machine falls on all of them
//! alike. Results are medians; Markdown goes to standard output, progress to standard error.
//! `BENCH_BASELINE_BIN` names another build of the binary (an earlier commit's, say): the `whole`
//! section then runs the hook cases of this build, the baseline and a control (this build again),
//! interleaved, `BENCH_AB_ROUNDS` rounds (default 300: the differences looked for are a few
//! percent, less than the noise of 30 runs), each build from ten copies in turn, and prints the
//! ratios of their medians.
//!
//! Timings are never asserted; what is asserted is correctness: every command succeeds, every
//! root filesystem ends as it started, and no journal is left behind.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cacerts_testkit::bench::{self, data_dir};
use cacerts_testkit::containers::{hook_binary, run, runc_bundle, runc_bundle_with};
use cacerts_testkit::fixtures::{alpine_bundle, alpine_bundle_without_usr, ubi, Base};
use cacerts_testkit::mount::Overlay;
use cacerts_testkit::rootfs::debian_rootfs;
use cacerts_testkit::{age, build, Node, Snapshot};

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");

/// The binary measured (see [`hook_binary`]).
fn bin() -> &'static Path {
    hook_binary(BIN)
}
/// The build compared with, from `BENCH_BASELINE_BIN`.
fn baseline() -> Option<&'static Path> {
    static BASELINE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASELINE
        .get_or_init(|| std::env::var_os("BENCH_BASELINE_BIN").map(PathBuf::from))
        .as_deref()
}

/// Copies of each build the baseline comparison runs from, one per round in turn.
const AB_COPIES: usize = 10;

/// Rounds of the baseline comparison, from `BENCH_AB_ROUNDS` (default 300).
fn ab_rounds() -> usize {
    std::env::var("BENCH_AB_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// The Debian root filesystem: the trust store, its Java key store, and a JRE for the tool's hook.
const DEBIAN_PACKAGES: &[&str] = &["ca-certificates", "ca-certificates-java", "default-jre-headless"];
/// Containers started at once in the concurrency section.
const PARALLEL: usize = 64;

fn main() {
    let sections: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |s: &str| sections.is_empty() || sections.iter().any(|a| a == s);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    assert!(
        rustix::process::geteuid().is_root(),
        "the benchmarks need root (chroot, runc)"
    );
    let bench = Bench::new(runs);
    let mut targets = Targets::default();
    let linked = match Command::new("readelf").arg("--dynamic").arg(bin()).output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("(NEEDED)") => "dynamically linked",
        Ok(_) => "statically linked",
        Err(_) => "linking unknown (no readelf)",
    };
    println!(
        "{} runs per measurement, interleaved; times are medians in milliseconds. Binary: `{}` ({linked}).\n",
        runs,
        bin().display()
    );
    if wanted("whole") {
        bench.whole(&mut targets);
    }
    if wanted("runc") {
        bench.runc(&mut targets);
    }
    if wanted("scale") {
        bench.scale(&mut targets);
    }
    if wanted("concurrency") {
        bench.concurrency();
    }
    targets.print();
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Samples by series name, in the order series first appeared.
#[derive(Default)]
struct Rec {
    series: Vec<(String, Vec<Duration>)>,
}

impl Rec {
    fn push(&mut self, name: &str, d: Duration) {
        match self.series.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(d),
            None => self.series.push((name.to_owned(), vec![d])),
        }
    }

    fn samples(&self, name: &str) -> &[Duration] {
        self.series
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_else(|| panic!("no series {name}"))
    }

    fn median(&self, name: &str) -> f64 {
        median(self.samples(name))
    }
}

/// Median in milliseconds.
fn median(v: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    }
}

/// The p-th percentile (nearest rank) in milliseconds.
fn percentile(v: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
    ms[rank.clamp(1, ms.len()) - 1]
}

/// The median, p10 and p90 of `s` as three cells of a Markdown row.
fn spread(s: &[Duration]) -> String {
    format!(
        "{} | {} | {}",
        fmt_ms(median(s)),
        fmt_ms(percentile(s, 10.0)),
        fmt_ms(percentile(s, 90.0))
    )
}

/// Runs `f(round, contestant, rec)` for every contestant, `runs` times, in an order that rotates
/// each round, so that no contestant always runs first or right after another.
fn interleave(runs: usize, contestants: usize, mut f: impl FnMut(usize, usize, &mut Rec)) -> Rec {
    let mut rec = Rec::default();
    for round in 0..runs {
        for k in 0..contestants {
            f(round, (k + round) % contestants, &mut rec);
        }
        if (round + 1) % 10 == 0 {
            eprintln!("  {} of {runs} rounds", round + 1);
        }
    }
    rec
}

/// A command line.
#[derive(Clone, Debug)]
struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Cmd {
    fn new(program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
        }
    }

    fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    fn install(root: &Path, certs: &Path, journal: &Path) -> Cmd {
        Cmd::install_by(bin(), root, certs, journal)
    }

    fn uninstall(root: &Path, journal: &Path) -> Cmd {
        Cmd::uninstall_by(bin(), root, journal)
    }

    /// `install` run by the binary `by`.
    fn install_by(by: &Path, root: &Path, certs: &Path, journal: &Path) -> Cmd {
        Cmd::new(by)
            .arg("install")
            .arg("--rootfs")
            .arg(root)
            .arg("--certs")
            .arg(certs)
            .arg("--journal")
            .arg(journal)
    }

    /// `uninstall` run by the binary `by`.
    fn uninstall_by(by: &Path, root: &Path, journal: &Path) -> Cmd {
        Cmd::new(by)
            .arg("uninstall")
            .arg("--rootfs")
            .arg(root)
            .arg("--journal")
            .arg(journal)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs the command to success and returns its wall time (spawn to reaped).
    fn time(&self) -> Duration {
        let mut c = self.command();
        let start = Instant::now();
        let out = c.output().unwrap_or_else(|e| panic!("{self:?}: {e}"));
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "{self:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    /// Runs the command to success under `/usr/bin/time -f %M` and returns its peak resident set
    /// size in KiB (the kernel's `ru_maxrss` of the reaped child).
    fn peak_rss_kib(&self, scratch: &Path) -> u64 {
        self.usage(scratch).peak_rss_kib
    }

    /// What the kernel reports of one run (`/usr/bin/time`: `ru_maxrss`, `ru_minflt`).
    fn usage(&self, scratch: &Path) -> Usage {
        let report = scratch.join("rss");
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M %R", "-o"])
            .arg(&report)
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = c.output().unwrap_or_else(|e| panic!("/usr/bin/time {self:?}: {e}"));
        assert!(
            out.status.success(),
            "{self:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&report).expect("read /usr/bin/time report");
        let numbers: Option<Vec<u64>> = text
            .lines()
            .last()
            .map(|l| l.split_whitespace().map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        match numbers.as_deref() {
            Some(&[peak_rss_kib, minor_faults]) => Usage {
                peak_rss_kib,
                minor_faults,
            },
            _ => panic!("unexpected /usr/bin/time output {text:?}"),
        }
    }
}

/// Resources of one run, as the kernel counts them for the reaped child.
#[derive(Clone, Copy)]
struct Usage {
    peak_rss_kib: u64,
    /// Page faults served without I/O: unlike times, the same from run to run within a few.
    minor_faults: u64,
}

impl Usage {
    /// The largest peak and the fewest faults of `self` and `other`.
    fn merge(self, other: Usage) -> Usage {
        Usage {
            peak_rss_kib: self.peak_rss_kib.max(other.peak_rss_kib),
            minor_faults: self.minor_faults.min(other.minor_faults),
        }
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Targets

#[derive(Default)]
struct Targets {
    rows: Vec<(String, String, String, bool)>,
}

impl Targets {
    fn check(&mut self, what: &str, target: &str, measured: String, met: bool) {
        self.rows.push((what.into(), target.into(), measured, met));
    }

    fn print(&self) {
        if self.rows.is_empty() {
            return;
        }
        println!("## Targets\n");
        println!("| what | target | measured | met |");
        println!("|---|---|---|---|");
        for (what, target, measured, met) in &self.rows {
            println!(
                "| {what} | {target} | {measured} | {} |",
                if *met { "yes" } else { "**no**" }
            );
        }
        println!();
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up

struct Bench {
    runs: usize,
    /// Scratch space on the disk that holds `target/` (where images would live).
    work: PathBuf,
    /// Scratch space on a tmpfs (where the hook keeps its journals: `/run` on a usual host).
    run_dir: PathBuf,
    /// One CA (a file).
    ca: PathBuf,
}

impl Bench {
    fn new(runs: usize) -> Bench {
        eprintln!("bench: generating or loading the benchmark certificates");
        let ca = bench::local_cas(1).join("ca-0000.pem");
        bench::image_pool_file();
        let work = data_dir().join(format!("work-{}", std::process::id()));
        let run_dir = PathBuf::from(format!("/dev/shm/cacerts-hook-bench-{}", std::process::id()));
        for d in [&work, &run_dir] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).expect("create scratch directory");
        }
        Bench {
            runs,
            work,
            run_dir,
            ca,
        }
    }

    /// A fresh directory under the disk scratch space.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.work.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create directory");
        d
    }

    /// A journal path on the tmpfs.
    fn journal(&self, name: &str) -> PathBuf {
        self.run_dir.join("journals").join(format!("{name}.journal"))
    }

    /// A fixture root built from `nodes` and aged.
    fn fixture(&self, name: &str, nodes: &[Node]) -> PathBuf {
        let root = self.dir(name);
        build(&root, nodes);
        age(&root);
        root
    }

    /// A hook configuration with one CA, the state on the tmpfs, the log on disk.
    fn hook_config(&self, name: &str, ca: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let dir = self.dir(&format!("{name}-config"));
        let state = self.run_dir.join(format!("{name}-state"));
        let log = dir.join("hook.log");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!("certs = [{ca:?}]\nstate_dir = {state:?}\nlog = {log:?}\non_error = \"fail\"\n"),
        )
        .expect("write config");
        (config, state, log)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if std::env::var_os("BENCH_KEEP").is_some() {
            eprintln!(
                "bench: BENCH_KEEP: leaving {} and {}",
                self.work.display(),
                self.run_dir.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// `/proc` mounted inside a root filesystem for as long as this lives (the JRE that
/// ca-certificates-java's hook runs needs it).
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(root: &Path) -> ProcMount {
        let target = root.join("proc");
        std::fs::create_dir_all(&target).expect("create proc");
        run(Command::new("mount").args(["-t", "proc", "proc"]).arg(&target));
        ProcMount(target)
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A journaled ext4 on a loop device backed by a sparse file in `dir`, as mkfs.ext4 makes it,
/// as the file systems a container host keeps images and containers on are (this machine's own
/// has no journal). Unmounted when dropped.
struct LoopExt4(PathBuf);

impl LoopExt4 {
    fn new(dir: &Path) -> LoopExt4 {
        let image = dir.join("ext4.img");
        let at = dir.join("mnt");
        std::fs::create_dir_all(&at).expect("create the mount point");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(512 << 20))
            .expect("create the file system image");
        // Inode tables and journal written now, not by a kernel thread while later rows run.
        let init = "lazy_itable_init=0,lazy_journal_init=0";
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-E", init]).arg(&image));
        run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&at));
        LoopExt4(at)
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Whether `path` is on a tmpfs.
fn on_tmpfs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type == 0x0102_1994)
}

/// `/bin/true` for a tiny root: a hard link to the host's static busybox (its `true` applet,
/// chosen by the link's name), copied when the link crosses file systems.
fn add_true(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    let dest = root.join("bin/true");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("create bin");
    if std::fs::hard_link(busybox, &dest).is_err() {
        std::fs::copy(busybox, &dest).expect("copy busybox");
    }
    for d in ["proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("create mount point");
    }
}

// ---------------------------------------------------------------------------------------------
// Sections

impl Bench {
    /// Install and uninstall of one CA on three layouts, against the distribution's tool and cp.
    fn whole(&self, targets: &mut Targets) {
        eprintln!("bench: whole process: building the fixtures");
        let base = bench::base(150);
        let alpine = self.fixture("alpine", &alpine_bundle(&base));
        let alpine_bare = self.fixture("alpine-bare", &alpine_bundle_without_usr(&base));
        // The same layout on the tmpfs: the hook's own cost, without this disk's (block
        // allocation, and a synchronous discard for every block freed).
        let alpine_tmpfs = self.run_dir.join("alpine-tmpfs");
        std::fs::create_dir_all(&alpine_tmpfs).expect("create the tmpfs root");
        build(&alpine_tmpfs, &alpine_bundle(&base));
        age(&alpine_tmpfs);
        // Overlays with a fresh upper layer for every install, as engines mount a container's
        // root: on the disk of target/ and on a journaled ext4 (declared first: unmounted last).
        let ext4 = LoopExt4::new(&self.dir("ext4"));
        let overlay_disk = Overlay::new(&self.dir("overlay"), &alpine_bundle(&base));
        let overlay_ext4 = Overlay::new(&ext4.0.join("overlay"), &alpine_bundle(&base));
        // Its own copy of the Debian root: an overlay's lower layer must not change under it.
        let deb_lower = self.dir("debian-lower");
        debian_rootfs(&deb_lower, "bookworm", DEBIAN_PACKAGES);
        let overlay_deb = Overlay::over(deb_lower, &ext4.0.join("overlay-debian"));
        let rhel = self.fixture("ubi", &ubi(&base));
        let deb_hook = self.dir("debian-hook");
        debian_rootfs(&deb_hook, "bookworm", DEBIAN_PACKAGES);
        let deb_tool = self.dir("debian-tool");
        debian_rootfs(&deb_tool, "bookworm", DEBIAN_PACKAGES);
        std::fs::create_dir_all(deb_tool.join("tmp/bench-no-hooks")).expect("mkdir");
        let _proc = ProcMount::new(&deb_tool);
        let disk_journals = self.dir("journals");
        let bundle = alpine.join("etc/ssl/certs/ca-certificates.crt");
        let cp_dest = self.dir("cp").join("ca-certificates.crt");
        let anchor = deb_tool.join("usr/local/share/ca-certificates/bench-ca.crt");
        let uca = |hooks: bool| {
            let c = Cmd::new("chroot").arg(&deb_tool).arg("update-ca-certificates");
            if hooks {
                c
            } else {
                c.arg("--hooksdir").arg("/tmp/bench-no-hooks")
            }
        };
        let hook_cases: Vec<(&str, PathBuf, PathBuf)> = vec![
            ("Alpine", alpine.clone(), self.journal("alpine")),
            (
                "Alpine without /usr/local/share",
                alpine_bare.clone(),
                self.journal("alpine-bare"),
            ),
            (
                "Alpine, root on tmpfs",
                alpine_tmpfs.clone(),
                self.journal("alpine-tmpfs"),
            ),
            (
                "Alpine, journal on disk",
                alpine.clone(),
                disk_journals.join("alpine.journal"),
            ),
            (
                "Alpine, overlay root, fresh upper layer",
                overlay_disk.merged.clone(),
                self.journal("overlay-disk"),
            ),
            (
                "Alpine, overlay root on a journaled ext4, fresh upper layer",
                overlay_ext4.merged.clone(),
                self.journal("overlay-ext4"),
            ),
            ("Debian", deb_hook.clone(), self.journal("debian")),
            (
                "Debian, overlay root on a journaled ext4, fresh upper layer",
                overlay_deb.merged.clone(),
                self.journal("overlay-debian"),
            ),
            ("RHEL (UBI)", rhel.clone(), self.journal("ubi")),
        ];
        // The overlay cases' roots, by index in hook_cases: mounted afresh before each install,
        // and the Alpine ones checked after each uninstall against how they were before it (the
        // Debian root is not snapshotted, here or on the disk: 400 MB hashed every round).
        let overlays: BTreeMap<usize, (&Overlay, bool)> = hook_cases
            .iter()
            .enumerate()
            .filter_map(|(k, (_, root, _))| {
                [(&overlay_disk, true), (&overlay_ext4, true), (&overlay_deb, false)]
                    .into_iter()
                    .find(|(o, _)| &o.merged == root)
                    .map(|o| (k, o))
            })
            .collect();
        let roots = [&alpine, &alpine_bare, &alpine_tmpfs, &rhel];
        let before: Vec<Snapshot> = roots.iter().map(|r| Snapshot::take(r)).collect();

        eprintln!("bench: whole process: {} interleaved rounds", self.runs);
        let n_hook = hook_cases.len();
        let hook_case = |k: usize, by: &Path, label: &str, rec: &mut Rec| {
            let (name, root, journal) = &hook_cases[k];
            let fresh = overlays.get(&k).and_then(|(o, check)| {
                o.fresh();
                check.then(|| Snapshot::take(root))
            });
            let i = Cmd::install_by(by, root, &self.ca, journal).time();
            rec.push(&format!("{label}{name} install"), i);
            let u = Cmd::uninstall_by(by, root, journal).time();
            rec.push(&format!("{label}{name} uninstall"), u);
            if let Some(before) = fresh {
                before.assert_same(&Snapshot::take(root), format!("{name} after a run"));
            }
        };
        let rec = interleave(self.runs, n_hook + 5, |_, k, rec| {
            if k < n_hook {
                hook_case(k, bin(), "", rec);
            } else if k < n_hook + 2 {
                let hooks = k == n_hook + 1;
                let label = if hooks { "with hooks" } else { "without hooks" };
                std::fs::copy(&self.ca, &anchor).expect("add the CA");
                rec.push(&format!("uca {label} install"), uca(hooks).time());
                std::fs::remove_file(&anchor).expect("remove the CA");
                rec.push(&format!("uca {label} uninstall"), uca(hooks).time());
            } else if k == n_hook + 2 {
                rec.push("cp", Cmd::new("cp").arg(&bundle).arg(&cp_dest).time());
            } else if k == n_hook + 3 {
                rec.push("true", Cmd::new("/bin/true").time());
            } else {
                rec.push("version", Cmd::new(bin()).arg("--version").time());
            }
        });
        // The baseline against this build: only the builds' hook runs, interleaved, many more
        // rounds (the differences looked for are a few percent, the noise of 30 runs more). The
        // same bytes run from two files were measured up to 10 % apart on this machine, steadily
        // over hundreds of rounds (where the page cache keeps a file matters), so each build runs
        // from AB_COPIES copies made together on the tmpfs, one per round in turn; a second set
        // of copies of this build is the control, whose ratio is the comparison's own error.
        let ab = self.builds().map(|builds| {
            let rounds = ab_rounds();
            eprintln!(
                "bench: whole process: {rounds} rounds of this build, the baseline and the control, \
                 {AB_COPIES} copies each"
            );
            interleave(rounds, builds.len() * n_hook, |round, k, rec| {
                let (label, copies) = &builds[k / n_hook];
                hook_case(k % n_hook, &copies[round % AB_COPIES], label, rec)
            })
        });
        for (b, root) in before.iter().zip(roots) {
            b.assert_same(&Snapshot::take(root), format!("{} after the runs", root.display()));
        }

        eprintln!("bench: whole process: peak RSS and page faults");
        let scratch = self.dir("rss");
        let mut rss = BTreeMap::new();
        for (k, (name, root, journal)) in hook_cases.iter().enumerate() {
            let runs: Vec<(Usage, Usage)> = (0..3)
                .map(|_| {
                    if let Some((o, _)) = overlays.get(&k) {
                        o.fresh();
                    }
                    let i = Cmd::install(root, &self.ca, journal).usage(&scratch);
                    (i, Cmd::uninstall(root, journal).usage(&scratch))
                })
                .collect();
            let best =
                |pick: fn(&(Usage, Usage)) -> Usage| runs.iter().map(pick).reduce(Usage::merge).expect("three runs");
            rss.insert(*name, (best(|r| r.0), best(|r| r.1)));
        }
        let cp_usage = Cmd::new("cp").arg(&bundle).arg(&cp_dest).usage(&scratch);

        println!("## Whole process: one CA\n");
        println!(
            "`cacerts-hook install --rootfs R --certs CA --journal J`, then `uninstall`: a process \
             started and reaped, as a runtime runs a hook. Journals on a tmpfs (`{}`, tmpfs: {}) \
             unless said otherwise; roots on the disk of `target/`. Fixtures: Alpine layout \
             (`alpine_bundle`, a bundle of {} certificates, {} KiB, and alpine-baselayout's `/usr` \
             directories; `alpine_bundle_without_usr` lacks the directories, so the anchor's \
             parents `/usr/local` and `/usr/local/share` are created too), RHEL layout (`ubi`, the same \
             certificates in its three bundles, the OpenSSL bundle and the hash directory), and a \
             real Debian bookworm root filesystem (mmdebstrap: {}). The overlay rows: the Alpine \
             layout (or a second copy of the Debian root) as the lower layer of an overlay file \
             system whose upper layer is emptied and mounted again before every install \
             (untimed), as an engine mounts each new container's root; the layers on the disk of \
             `target/`, or on a journaled ext4 on a loop device.\n",
            self.run_dir.display(),
            on_tmpfs(&self.run_dir),
            base.cas.len(),
            std::fs::metadata(&bundle).map(|m| m.len() / 1024).unwrap_or(0),
            DEBIAN_PACKAGES.join(", "),
        );
        println!("| command | median ms | p10 | p90 | peak RSS MiB | page faults |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, _, _) in &hook_cases {
            for (op, r) in [("install", rss[name].0), ("uninstall", rss[name].1)] {
                let s = rec.samples(&format!("{name} {op}"));
                println!(
                    "| cacerts-hook {op}, {name} | {} | {} | {} |",
                    spread(s),
                    fmt_mib(r.peak_rss_kib),
                    r.minor_faults
                );
            }
        }
        for hooks in [false, true] {
            let label = if hooks { "with hooks" } else { "without hooks" };
            for op in ["install", "uninstall"] {
                let s = rec.samples(&format!("uca {label} {op}"));
                let what = if op == "install" { "CA added" } else { "CA removed" };
                let hooks_note = if hooks {
                    "update.d hooks run (ca-certificates-java's trigger; see BENCHMARKS.md)"
                } else {
                    "`--hooksdir` empty: no Java key store"
                };
                println!(
                    "| `update-ca-certificates` in chroot, Debian, {what}; {hooks_note} | {} | | |",
                    spread(s)
                );
            }
        }
        println!(
            "| `cp` of the Alpine bundle (floor: one process, one file) | {} | {} | {} |",
            spread(rec.samples("cp")),
            fmt_mib(cp_usage.peak_rss_kib),
            cp_usage.minor_faults
        );
        println!(
            "| `/bin/true` (floor: starting and reaping a process, here) | {} | | |",
            spread(rec.samples("true"))
        );
        println!(
            "| `cacerts-hook --version` (floor: starting this binary, parsing its command line, \
             exiting) | {} | | |",
            spread(rec.samples("version"))
        );
        println!();

        let deb_i = rec.median("Debian install");
        let deb_u = rec.median("Debian uninstall");
        let uca_j = rec.median("uca with hooks install");
        let uca_nj = rec.median("uca without hooks install");
        let uca_j_u = rec.median("uca with hooks uninstall");
        let cp = rec.median("cp");
        let alp_i = rec.median("Alpine install");
        let alp_u = rec.median("Alpine uninstall");
        println!("Ratios of medians, same run:\n");
        println!(
            "- `update-ca-certificates` (update.d hooks run) / `cacerts-hook install` on Debian \
             (which also updates the Java key store): **{:.0}x**",
            uca_j / deb_i
        );
        println!(
            "- `update-ca-certificates` (without hooks) / `cacerts-hook install` on Debian: **{:.0}x**",
            uca_nj / deb_i
        );
        println!(
            "- `update-ca-certificates` removing the CA (update.d hooks run) / `cacerts-hook \
             uninstall` on Debian: **{:.0}x**",
            uca_j_u / deb_u
        );
        println!(
            "- `cacerts-hook install` on Alpine / `cp` of its bundle: **{:.1}x**; uninstall / cp: **{:.1}x**",
            alp_i / cp,
            alp_u / cp
        );
        println!(
            "- Alpine, root on the disk / on the tmpfs: install **{:.1}x**, uninstall **{:.1}x** \
             (tmpfs: {} and {} ms)",
            alp_i / rec.median("Alpine, root on tmpfs install"),
            alp_u / rec.median("Alpine, root on tmpfs uninstall"),
            fmt_ms(rec.median("Alpine, root on tmpfs install")),
            fmt_ms(rec.median("Alpine, root on tmpfs uninstall")),
        );
        for (case, plain) in [
            ("Alpine, overlay root, fresh upper layer", "Alpine"),
            ("Alpine, overlay root on a journaled ext4, fresh upper layer", "Alpine"),
            ("Debian, overlay root on a journaled ext4, fresh upper layer", "Debian"),
        ] {
            let m = |name: &str, op: &str| rec.median(&format!("{name} {op}"));
            let (i, u) = (m(case, "install"), m(case, "uninstall"));
            println!(
                "- {case}: install {} ms, uninstall {} ms; against the plain root on the disk: \
                 **{:.2}x** and **{:.2}x**",
                fmt_ms(i),
                fmt_ms(u),
                i / m(plain, "install"),
                u / m(plain, "uninstall")
            );
        }
        let floor = rec.median("true");
        println!(
            "- Alpine install, journal on disk / on tmpfs: **{:.1}x**",
            rec.median("Alpine, journal on disk install") / alp_i
        );
        println!(
            "- Beyond starting a process (`/bin/true`, {} ms here): install {} ms and uninstall {} \
             ms on Alpine, {} and {} ms on Debian, `cp` of the bundle {} ms",
            fmt_ms(floor),
            fmt_ms(alp_i - floor),
            fmt_ms(alp_u - floor),
            fmt_ms(deb_i - floor),
            fmt_ms(deb_u - floor),
            fmt_ms(cp - floor)
        );
        let own = rec.median("version");
        println!(
            "- Beyond starting this binary (`cacerts-hook --version`, {} ms here): install {} ms \
             and uninstall {} ms on Alpine, {} and {} ms on Debian\n",
            fmt_ms(own),
            fmt_ms(alp_i - own),
            fmt_ms(alp_u - own),
            fmt_ms(deb_i - own),
            fmt_ms(deb_u - own),
        );

        if let (Some(by), Some(rec)) = (baseline(), &ab) {
            println!(
                "Against the baseline `{}`: {} rounds of only the builds' runs, interleaved, each \
                 build from {AB_COPIES} copies in turn; the control is this build again from \
                 copies of its own, so its ratio is the comparison's own error (medians, ms):\n",
                by.display(),
                ab_rounds()
            );
            println!(
                "| case | install | baseline | ratio | control ratio | uninstall | baseline | ratio | control ratio |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            for (name, _, _) in &hook_cases {
                let m = |label: &str, op: &str| rec.median(&format!("{label}{name} {op}"));
                let (i, bi, ci) = (m("", "install"), m("baseline ", "install"), m("control ", "install"));
                let (u, bu, cu) = (
                    m("", "uninstall"),
                    m("baseline ", "uninstall"),
                    m("control ", "uninstall"),
                );
                println!(
                    "| {name} | {} | {} | {:.2}x | {:.2}x | {} | {} | {:.2}x | {:.2}x |",
                    fmt_ms(i),
                    fmt_ms(bi),
                    i / bi,
                    i / ci,
                    fmt_ms(u),
                    fmt_ms(bu),
                    u / bu,
                    u / cu
                );
            }
            println!();
        }

        targets.check(
            "install, 1 CA, Alpine layout",
            "≤ 1.5 ms",
            format!("{} ms", fmt_ms(alp_i)),
            alp_i <= 1.5,
        );
        targets.check(
            "uninstall, 1 CA, Alpine layout",
            "≤ 1.5 ms",
            format!("{} ms", fmt_ms(alp_u)),
            alp_u <= 1.5,
        );
        targets.check(
            "update-ca-certificates (update.d hooks run) / install, Debian",
            "≥ 300x",
            format!("{:.0}x", uca_j / deb_i),
            uca_j / deb_i >= 300.0,
        );
        targets.check(
            "update-ca-certificates (no hooks) / install, Debian",
            "≥ 300x",
            format!("{:.0}x", uca_nj / deb_i),
            uca_nj / deb_i >= 300.0,
        );
        let peak = rss
            .values()
            .map(|(i, u)| i.peak_rss_kib.max(u.peak_rss_kib))
            .max()
            .unwrap_or(0);
        targets.check(
            "peak RSS, 1 CA, any layout",
            "≤ 10 MiB",
            format!("{} MiB", fmt_mib(peak)),
            peak <= 10 * 1024,
        );
    }

    /// `runc run` of `/bin/true` with and without the two hook stages.
    fn runc(&self, targets: &mut Targets) {
        eprintln!("bench: runc: building the roots");
        let base = bench::base(150);
        let tiny = self.fixture("runc-alpine", &alpine_bundle(&base));
        add_true(&tiny);
        let debian = self.dir("runc-debian");
        debian_rootfs(&debian, "bookworm", DEBIAN_PACKAGES);
        let (config, state, log) = self.hook_config("runc", &self.ca);
        let runc_root = self.run_dir.join("runc");
        let hook = bin();
        let mut cases = Vec::new();
        for (name, root) in [("Debian", &debian), ("Alpine layout, static busybox", &tiny)] {
            let dir = self.dir(&format!("bundles-{}", cases.len()));
            let plain = runc_bundle(hook, &dir, root, &["/bin/true"], None);
            let hooked = runc_bundle(hook, &dir, root, &["/bin/true"], Some(&config));
            // The floor of any hook: runc starting a process that does nothing at both stages.
            let noop_dir = self.dir(&format!("bundles-noop-{}", cases.len()));
            let noop = runc_bundle(Path::new("/bin/true"), &noop_dir, root, &["/bin/true"], Some(&config));
            // The floor of this binary: runc starting it at both stages to print its version.
            let own_dir = self.dir(&format!("bundles-own-{}", cases.len()));
            let own = runc_bundle_with(hook, &own_dir, root, &["/bin/true"], Some(&config), |spec| {
                for stage in ["createRuntime", "poststop"] {
                    spec["hooks"][stage][0]["args"] = serde_json::json!([hook, "--version"]);
                }
            });
            cases.push((name, root.clone(), plain, hooked, noop, own, Snapshot::take(root)));
        }
        let mut n = 0;
        let mut runc = |bundle: &Path| {
            n += 1;
            Cmd::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .arg("run")
                .arg("--bundle")
                .arg(bundle)
                .arg(format!("cacerts-bench-{}-{n}", std::process::id()))
                .time()
        };
        // A `runc run` takes about 30 ms here and moves by several from one run to the next, more
        // than what the hooks add: four times the rounds of the other sections (a minute).
        let rounds = self.runs * 4;
        eprintln!("bench: runc: {rounds} interleaved rounds");
        let rec = interleave(rounds, cases.len() * 4, |_, k, rec| {
            let (name, _, plain, hooked, noop, own, _) = &cases[k / 4];
            match k % 4 {
                0 => rec.push(&format!("{name} plain"), runc(plain)),
                1 => rec.push(&format!("{name} hook"), runc(hooked)),
                2 => rec.push(&format!("{name} noop"), runc(noop)),
                _ => rec.push(&format!("{name} own"), runc(own)),
            }
        });
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!log_text.contains("result=error"), "hook errors:\n{log_text}");
        assert_eq!(
            log_text.matches("stage=createRuntime").count(),
            rounds * cases.len(),
            "one createRuntime per hooked run:\n{log_text}"
        );
        assert_no_journals(&state);
        for (_, root, _, _, _, _, before) in &cases {
            before.assert_same(&Snapshot::take(root), format!("{} after runc runs", root.display()));
        }

        println!("## `runc run` of a trivial container\n");
        println!(
            "`runc run` of `/bin/true` (host network), {rounds} interleaved rounds (medians), without \
             hooks and with `createRuntime` + \
             `poststop` running `cacerts-hook` (one CA, state on tmpfs, log to a file). The \
             container's lifetime is the whole `runc run`: create, hooks, start, wait, delete. \
             Two floors: `/bin/true` as both hooks (what runc spends on starting any hook), and \
             `cacerts-hook --version` as both hooks (this binary started, its command line \
             parsed, and nothing done).\n"
        );
        println!(
            "| root filesystem | without hook ms | with hook ms | added ms | added | `/bin/true` as both hooks: added | `cacerts-hook --version` as both hooks: added |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (name, ..) in &cases {
            let plain = rec.median(&format!("{name} plain"));
            let hooked = rec.median(&format!("{name} hook"));
            let noop = rec.median(&format!("{name} noop"));
            let own = rec.median(&format!("{name} own"));
            println!(
                "| {name} | {} | {} | {} | {:+.1} % | {} ms, {:+.1} % | {} ms, {:+.1} % |",
                fmt_ms(plain),
                fmt_ms(hooked),
                fmt_ms(hooked - plain),
                (hooked / plain - 1.0) * 100.0,
                fmt_ms(noop - plain),
                (noop / plain - 1.0) * 100.0,
                fmt_ms(own - plain),
                (own / plain - 1.0) * 100.0
            );
            targets.check(
                &format!("runc run with both hook stages, {name}"),
                "≤ +15 %",
                format!("{:+.1} %", (hooked / plain - 1.0) * 100.0),
                hooked / plain <= 1.15,
            );
        }
        println!();
    }

    /// With `BENCH_BASELINE_BIN`: this build, the baseline and the control (this build again),
    /// labelled for their series, each as [`AB_COPIES`] copies made together on the tmpfs.
    fn builds(&self) -> Option<Vec<(&'static str, Vec<PathBuf>)>> {
        let by = baseline()?;
        let dir = self.run_dir.join("builds");
        std::fs::create_dir_all(&dir).expect("create the builds' directory");
        Some(
            [("", bin()), ("baseline ", by), ("control ", bin())]
                .into_iter()
                .enumerate()
                .map(|(n, (label, from))| {
                    let copies = (0..AB_COPIES)
                        .map(|c| {
                            let to = dir.join(format!("cacerts-hook-{n}-{c}"));
                            if !to.exists() {
                                std::fs::copy(from, &to).expect("copy a build");
                            }
                            to
                        })
                        .collect();
                    (label, copies)
                })
                .collect(),
        )
    }

    /// Install + uninstall against the number of CAs and the size of the image's bundle.
    fn scale(&self, targets: &mut Targets) {
        eprintln!("bench: scale: building the fixtures");
        let mut cases: Vec<(String, PathBuf, PathBuf, usize, usize)> = Vec::new();
        let base150 = bench::base(150);
        let small = self.fixture("scale-150", &alpine_bundle(&base150));
        for cas in [1, 10, 100, 1000] {
            cases.push((
                format!("{cas} CA, 150-cert bundle"),
                small.clone(),
                bench::local_cas(cas),
                cas,
                150,
            ));
        }
        for size in [1_500, 15_000] {
            let base = Base {
                cas: bench::image_certs(size),
            };
            let root = self.fixture(&format!("scale-{size}"), &alpine_bundle(&base));
            cases.push((format!("1 CA, {size}-cert bundle"), root, bench::local_cas(1), 1, size));
        }
        // The same 1,000 CAs on a root on the tmpfs: what the hook costs where creating a file is
        // cheap, beside what this disk costs.
        let small_tmpfs = self.run_dir.join("scale-150-tmpfs");
        std::fs::create_dir_all(&small_tmpfs).expect("create the tmpfs root");
        build(&small_tmpfs, &alpine_bundle(&base150));
        age(&small_tmpfs);
        cases.push((
            "1000 CA, 150-cert bundle, root on tmpfs".into(),
            small_tmpfs,
            bench::local_cas(1000),
            1000,
            150,
        ));
        let befores: Vec<Snapshot> = cases.iter().map(|c| Snapshot::take(&c.1)).collect();
        eprintln!("bench: scale: {} interleaved rounds", self.runs);
        let cas_1000 = bench::local_cas(1000);
        let cp_dir = self.dir("scale-cp");
        let cp_tmpfs = self.run_dir.join("scale-cp");
        std::fs::create_dir_all(&cp_tmpfs).expect("create the tmpfs copy directory");
        let rec = interleave(self.runs, cases.len() + 2, |_, k, rec| {
            if k >= cases.len() {
                // The floor of writing 1,000 small files on the disk, and on the tmpfs.
                let (series, dest) = if k == cases.len() {
                    ("cp -r", cp_dir.join("cas"))
                } else {
                    ("cp -r tmpfs", cp_tmpfs.join("cas"))
                };
                rec.push(series, Cmd::new("cp").arg("-r").arg(&cas_1000).arg(&dest).time());
                std::fs::remove_dir_all(&dest).expect("remove the copy");
                return;
            }
            let (name, root, cas, ..) = &cases[k];
            let journal = self.journal(&format!("scale-{k}"));
            rec.push(&format!("{name} install"), Cmd::install(root, cas, &journal).time());
            rec.push(&format!("{name} uninstall"), Cmd::uninstall(root, &journal).time());
        });
        // The target's case against the baseline: only it and its floor, interleaved, from
        // copies of each build (as in the whole-process section).
        let tmpfs_case = cases.len() - 1;
        let ab_rounds = ab_rounds() / 5;
        let ab = self.builds().map(|builds| {
            eprintln!(
                "bench: scale: {ab_rounds} rounds of 1,000 CAs on the tmpfs, this build, the baseline and the control"
            );
            let (_, root, cas, ..) = &cases[tmpfs_case];
            let journal = self.journal("scale-ab");
            interleave(ab_rounds, builds.len() + 1, |round, k, rec| {
                let Some((label, copies)) = builds.get(k) else {
                    let dest = cp_tmpfs.join("cas");
                    rec.push("cp -r tmpfs", Cmd::new("cp").arg("-r").arg(cas).arg(&dest).time());
                    std::fs::remove_dir_all(&dest).expect("remove the copy");
                    return;
                };
                let by = &copies[round % AB_COPIES];
                rec.push(
                    &format!("{label}install"),
                    Cmd::install_by(by, root, cas, &journal).time(),
                );
                rec.push(
                    &format!("{label}uninstall"),
                    Cmd::uninstall_by(by, root, &journal).time(),
                );
            })
        });
        for (b, c) in befores.iter().zip(&cases) {
            b.assert_same(&Snapshot::take(&c.1), format!("{} after the runs", c.0));
        }
        let scratch = self.dir("rss-scale");
        println!("## Scale: CAs installed, certificates in the image's bundle\n");
        println!(
            "Alpine layout; whole process, journals on tmpfs. The 150-certificate bundle is {} KiB.\n",
            std::fs::metadata(small.join("etc/ssl/certs/ca-certificates.crt"))
                .map(|m| m.len() / 1024)
                .unwrap_or(0)
        );
        println!("| case | bundle MiB | install ms | uninstall ms | both ms | peak RSS MiB |");
        println!("|---|---:|---:|---:|---:|---:|");
        let mut both = Vec::new();
        let mut peak_all = 0;
        for (k, (name, root, cas, _, _)) in cases.iter().enumerate() {
            let journal = self.journal(&format!("scale-{k}"));
            let mut peak = 0;
            for _ in 0..3 {
                peak = peak.max(Cmd::install(root, cas, &journal).peak_rss_kib(&scratch));
                peak = peak.max(Cmd::uninstall(root, &journal).peak_rss_kib(&scratch));
            }
            peak_all = peak_all.max(peak);
            let i = rec.median(&format!("{name} install"));
            let u = rec.median(&format!("{name} uninstall"));
            let size = std::fs::metadata(root.join("etc/ssl/certs/ca-certificates.crt"))
                .map(|m| m.len())
                .unwrap_or(0);
            both.push(i + u);
            println!(
                "| {name} | {:.2} | {} | {} | {} | {} |",
                size as f64 / (1 << 20) as f64,
                fmt_ms(i),
                fmt_ms(u),
                fmt_ms(i + u),
                fmt_mib(peak)
            );
        }
        println!(
            "| floor: `cp -r` of the 1000 CA files (one process) | | {} | | | |",
            fmt_ms(rec.median("cp -r"))
        );
        println!(
            "| floor: `cp -r` of the 1000 CA files to the tmpfs | | {} | | | |",
            fmt_ms(rec.median("cp -r tmpfs"))
        );
        println!();
        // Marginal costs: per CA between 1 and 1,000, per bundle certificate between 150 and 15,000.
        let per_ca =
            |a: usize, b: usize| (both[b] - both[a]) / ([1.0, 10.0, 100.0, 1000.0][b] - [1.0, 10.0, 100.0, 1000.0][a]);
        println!(
            "Marginal cost per CA (install + uninstall): 1→10: {:.3} ms, 10→100: {:.3} ms, \
             100→1000: {:.3} ms.",
            per_ca(0, 1),
            per_ca(1, 2),
            per_ca(2, 3)
        );
        println!(
            "Marginal cost per 1,000 bundle certificates: 150→1,500: {:.2} ms, 1,500→15,000: {:.2} ms.\n",
            (both[4] - both[0]) / 1.35,
            (both[5] - both[4]) / 13.5
        );
        if let (Some(by), Some(rec)) = (baseline(), &ab) {
            let m = |series: &str| rec.median(series);
            let both = |label: &str| m(&format!("{label}install")) + m(&format!("{label}uninstall"));
            println!(
                "1,000 CAs, root on the tmpfs, against the baseline `{}`: {ab_rounds} rounds of only \
                 this case, the three builds and `cp -r` to the tmpfs interleaved, each build from \
                 {AB_COPIES} copies in turn (medians, ms):\n",
                by.display()
            );
            println!("| build | install | uninstall | both | / baseline | / `cp -r` |");
            println!("|---|---:|---:|---:|---:|---:|");
            let cp = m("cp -r tmpfs");
            for (name, label) in [
                ("this build", ""),
                ("baseline", "baseline "),
                ("control: this build again", "control "),
            ] {
                println!(
                    "| {name} | {} | {} | {} | {:.2}x | {:.2}x |",
                    fmt_ms(m(&format!("{label}install"))),
                    fmt_ms(m(&format!("{label}uninstall"))),
                    fmt_ms(both(label)),
                    both(label) / both("baseline "),
                    both(label) / cp
                );
            }
            println!("| floor: `cp -r` to the tmpfs | {} | | | | |\n", fmt_ms(cp));
            println!(
                "This build / the control, the comparison's own error: install {:.2}x, uninstall \
                 {:.2}x, both {:.2}x.\n",
                m("install") / m("control install"),
                m("uninstall") / m("control uninstall"),
                both("") / both("control ")
            );
        }
        targets.check(
            "install + uninstall, 1000 CAs",
            "≤ 50 ms",
            format!("{} ms", fmt_ms(both[3])),
            both[3] <= 50.0,
        );
        targets.check(
            "install + uninstall, 1000 CAs, root on tmpfs",
            "≤ 50 ms",
            format!("{} ms", fmt_ms(both[6])),
            both[6] <= 50.0,
        );
        targets.check(
            "peak RSS, scale cases (up to 1000 CAs, 15,000-cert bundle)",
            "≤ 10 MiB",
            format!("{} MiB", fmt_mib(peak_all)),
            peak_all <= 10 * 1024,
        );
    }

    /// 64 containers started at once under runc, with and without the hook.
    fn concurrency(&self) {
        eprintln!("bench: concurrency: building {PARALLEL} roots");
        let base = bench::base(150);
        let nodes = alpine_bundle(&base);
        let (config, state, log) = self.hook_config("parallel", &self.ca);
        let hook = bin();
        let runc_root = self.run_dir.join("runc-parallel");
        let mut roots = Vec::new();
        for i in 0..PARALLEL {
            let root = self.fixture(&format!("parallel/root-{i}"), &nodes);
            add_true(&root);
            let dir = self.dir(&format!("parallel/bundles-{i}"));
            let plain = runc_bundle(hook, &dir, &root, &["/bin/true"], None);
            let hooked = runc_bundle(hook, &dir, &root, &["/bin/true"], Some(&config));
            let snap = Snapshot::take(&root);
            roots.push((root, plain, hooked, snap));
        }
        let rounds = self.runs.div_ceil(6).max(3);
        let mut serial = 0;
        eprintln!("bench: concurrency: {rounds} interleaved rounds");
        let rec = interleave(rounds, 2, |_, k, rec| {
            let start = Instant::now();
            let children: Vec<(Child, String)> = roots
                .iter()
                .map(|(_, plain, hooked, _)| {
                    serial += 1;
                    let id = format!("cacerts-par-{}-{serial}", std::process::id());
                    let child = Command::new("runc")
                        .arg("--root")
                        .arg(&runc_root)
                        .arg("run")
                        .arg("--bundle")
                        .arg(if k == 0 { plain } else { hooked })
                        .arg(&id)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn runc");
                    (child, id)
                })
                .collect();
            let mut failures = Vec::new();
            for (child, id) in children {
                let out = child.wait_with_output().expect("wait for runc");
                if !out.status.success() {
                    failures.push(format!(
                        "{id}: {:?} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            rec.push(if k == 0 { "plain" } else { "hook" }, start.elapsed());
            assert!(
                failures.is_empty(),
                "{} of {PARALLEL} failed: {failures:#?}",
                failures.len()
            );
        });
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!log_text.contains("result=error"), "hook errors:\n{log_text}");
        assert_no_journals(&state);
        for (root, _, _, before) in &roots {
            before.assert_same(&Snapshot::take(root), format!("{} after the runs", root.display()));
        }
        let plain = rec.median("plain");
        let hooked = rec.median("hook");
        println!("## Concurrency: {PARALLEL} containers started at once\n");
        println!(
            "{PARALLEL} `runc run` of `/bin/true`, each on its own Alpine-layout root (static \
             busybox), started together; wall time until the last one is reaped. {rounds} rounds \
             each, interleaved. Asserted: every container exits 0, no journal is left in the state \
             directory, every root is as before.\n"
        );
        println!("| | wall ms (median) | per container ms |");
        println!("|---|---:|---:|");
        println!(
            "| without hook | {} | {} |",
            fmt_ms(plain),
            fmt_ms(plain / PARALLEL as f64)
        );
        println!(
            "| with hook | {} | {} |",
            fmt_ms(hooked),
            fmt_ms(hooked / PARALLEL as f64)
        );
        println!(
            "\nWith / without: **{:.2}x**; failures: 0; journals left: 0.\n",
            hooked / plain
        );
    }
}

/// Panics if a journal (or its backups) is left in the hook's state directory.
fn assert_no_journals(state: &Path) {
    let left: Vec<_> = std::fs::read_dir(state)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".journal"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "journals left behind: {left:?}");
}
