//! Library calls, in process (criterion): detection, planning, install and uninstall of one CA on
//! the fixtures of three layouts (a store of 150 certificates each), and planning against
//! 15,000. Roots are on the disk of `target/`, journals on `/dev/shm` with `durable: false`, as
//! the hook runs with its state directory on a tmpfs. Run by `scripts/bench core`.

// criterion_group! and criterion_main! generate public functions without documentation.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cacerts_core::certs::CaCert;
use cacerts_core::installer::{self, Settings};
use cacerts_core::{distro, install, uninstall_with, ContainerRoot, Options};
use cacerts_testkit::fixtures::{self, Base};
use cacerts_testkit::{age, bench, build, Node};
use criterion::{criterion_group, criterion_main, Criterion};

struct Fixture {
    name: &'static str,
    root: PathBuf,
}

fn fixture(work: &Path, name: &'static str, nodes: &[Node]) -> Fixture {
    let root = work.join(name);
    std::fs::create_dir_all(&root).expect("create fixture root");
    build(&root, nodes);
    age(&root);
    Fixture { name, root }
}

fn calls(c: &mut Criterion) {
    let work = tempfile::tempdir_in(bench::data_dir()).expect("scratch directory");
    let journals = tempfile::tempdir_in("/dev/shm").expect("journal directory");
    let base = bench::base(150);
    let big = Base {
        cas: bench::image_certs(15_000),
    };
    let fixtures = [
        fixture(work.path(), "alpine", &fixtures::alpine_bundle(&base)),
        fixture(work.path(), "debian", &fixtures::debian(&base)),
        fixture(work.path(), "ubi", &fixtures::ubi(&base)),
        fixture(work.path(), "alpine-15000", &fixtures::alpine_bundle(&big)),
    ];
    let certs: Vec<CaCert> = cacerts_core::certs::load(&[bench::local_cas(1)]).certs;
    assert_eq!(certs.len(), 1);
    let settings = Settings::default();
    let mut options = Options::default();
    options.durable = false;

    for f in &fixtures {
        let root = ContainerRoot::open(&f.root).expect("open root");
        let journal = journals.path().join(format!("{}.journal", f.name));
        c.bench_function(&format!("detect/{}", f.name), |b| {
            b.iter(|| distro::detect(&root).expect("detect"))
        });
        c.bench_function(&format!("plan/{}", f.name), |b| {
            b.iter(|| installer::plan(&root, &certs, &settings).expect("plan"))
        });
        if f.name.ends_with("15000") {
            continue;
        }
        let (_, plan) = installer::plan(&root, &certs, &settings).expect("plan");
        assert!(!plan.is_empty());
        // Each install is undone before the next (and each uninstall needs an install first):
        // only the call named is timed.
        c.bench_function(&format!("install/{}", f.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    install(&root, &plan, &journal, &options).expect("install");
                    total += start.elapsed();
                    uninstall_with(&root, &journal, &options).expect("uninstall");
                }
                total
            })
        });
        c.bench_function(&format!("uninstall/{}", f.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    install(&root, &plan, &journal, &options).expect("install");
                    let start = Instant::now();
                    uninstall_with(&root, &journal, &options).expect("uninstall");
                    total += start.elapsed();
                }
                total
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = calls
}
criterion_main!(benches);
