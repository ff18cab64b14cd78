//! The outside programs that tests drive: Debian's chromium with the
//! pinned playwright-core (tests/api/browser.rs), schemathesis and
//! openapi-spec-validator (tests/api/openapi.rs). A fresh machine of the
//! project's kind has none of them, so the first test that needs one
//! installs it, from the same registries `.ci/run` uses, and `cargo test`
//! alone succeeds there. A tool that cannot be had fails the test with the
//! command that failed: a missing tool never turns into a skipped test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One install at a time: apt and pip each hold their own locks, and two
/// tests racing for them would fail for no reason of their own.
static INSTALLING: Mutex<()> = Mutex::new(());

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        status.success(),
        "`{program} {}` failed: {status}",
        args.join(" ")
    );
}

/// Debian's chromium, or the one `CHROMIUM` names.
pub fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from("/usr/bin/chromium");
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        run("apt-get", &["update", "-qq"]);
        run(
            "apt-get",
            &["install", "-y", "-qq", "chromium", "chromium-driver"],
        );
    }
    path
}

/// e2e/node_modules with the playwright-core version e2e/package-lock.json
/// pins.
pub fn playwright(root: &Path) {
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if !root.join("e2e/node_modules/playwright-core").exists() {
        let prefix = root.join("e2e");
        let prefix = prefix.to_string_lossy();
        run(
            "npm",
            &["ci", "--prefix", &prefix, "--no-audit", "--no-fund"],
        );
    }
}

/// The schemathesis command, installed with pip if it is missing.
pub fn schemathesis() -> PathBuf {
    pip_script("schemathesis", "schemathesis>=4,<5")
}

/// The openapi-spec-validator command, installed with pip if it is missing.
pub fn openapi_spec_validator() -> PathBuf {
    pip_script("openapi-spec-validator", "openapi-spec-validator>=0.7,<1")
}

/// A command of a PyPI package, installed with pip if it is missing. It is
/// found in the interpreter's own scripts directory, so a version manager's
/// shims (pyenv) need no rehash.
fn pip_script(script: &str, requirement: &str) -> PathBuf {
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    let path = PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join(script);
    if !path.exists() {
        run("python3", &["-m", "pip", "install", "--quiet", requirement]);
    }
    path
}

/// moto's S3-compatible server (`moto_server`), installed with pip if it
/// is missing: the object store the S3 upload tests run against.
pub fn moto_server() -> PathBuf {
    pip_script("moto_server", "moto[server]>=5,<6")
}
