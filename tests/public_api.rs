//! The public API of the `seamless` crate (all features) against its
//! checked-in listing, `seamless/api.txt`, so that every change to the API
//! shows in review as a change of that file.
//!
//! The listing is `cargo public-api -p seamless --all-features -s`:
//! `cargo-public-api` reads the crate's rustdoc JSON, which only the
//! nightly toolchain writes; `-s` leaves out blanket impls (`impl<T> From<T>
//! for T` and the like). Two kinds of lines are dropped on top: the impls
//! of `Freeze` and `UnsafeUnpin`, compiler-internal marker traits that
//! come and go with the nightly version. `Send`, `Sync`, `Unpin` and the
//! unwind-safety traits stay.
//!
//! After an intended change, write the new listing and read its diff:
//!
//! ```text
//! SEAMLESS_BLESS_API=1 cargo test --test public_api
//! ```
//!
//! Without `cargo-public-api` or a nightly toolchain the check cannot run:
//! it says so on stderr and passes, except in CI (`CI` set), where it
//! fails. `.ci/run` installs `cargo-public-api`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The version `.ci/run` installs: the newest that reads the rustdoc JSON
/// of the nightly this workspace is checked with (format 57).
const TOOL: &str = "cargo-public-api 0.52.0";

/// Compiler-internal marker traits whose impls depend on the nightly.
const UNSTABLE_MARKERS: [&str; 2] = ["core::marker::Freeze", "core::marker::UnsafeUnpin"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Says loudly that the check did not run; in CI that is a failure.
fn not_run(why: &str) {
    let message = format!(
        "SKIPPED: the public API of seamless was not compared with seamless/api.txt: {why}"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    // Past the test harness's capture of eprintln!, which a passing test
    // would swallow.
    let _ = std::io::stderr().write_all(format!("\n{message}\n").as_bytes());
}

/// `cargo public-api`'s listing, or why there is none.
fn listing() -> Result<String, String> {
    let cargo = || {
        let mut c = Command::new("cargo");
        // The test runs under the stable toolchain; the tool asks for
        // nightly itself.
        c.env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .current_dir(root());
        c
    };
    let version = cargo()
        .args(["public-api", "--version"])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if version != TOOL {
        return Err(format!(
            "{TOOL} is needed, found {:?} (cargo install --locked cargo-public-api@0.52.0)",
            version
        ));
    }
    let out = cargo()
        .args(["public-api", "-p", "seamless", "--all-features", "-s"])
        // A build directory of its own: the outer `cargo test` holds the
        // lock of the workspace's.
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("public-api"),
        )
        .output()
        .map_err(|e| format!("cannot run cargo public-api: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("nightly") && !stderr.contains("error[") {
            return Err(format!("no usable nightly toolchain: {}", stderr.trim()));
        }
        panic!("cargo public-api failed:\n{stderr}");
    }
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    Ok(text
        .lines()
        .filter(|line| !UNSTABLE_MARKERS.iter().any(|m| line.contains(m)))
        .map(|line| format!("{line}\n"))
        .collect())
}

/// The lines only in `old` (`-`) and only in `new` (`+`): the listing is
/// sorted, so this reads as a diff.
fn diff(old: &str, new: &str) -> String {
    let (old, new): (Vec<_>, Vec<_>) = (old.lines().collect(), new.lines().collect());
    let gone = old
        .iter()
        .filter(|l| !new.contains(l))
        .map(|l| format!("- {l}"));
    let came = new
        .iter()
        .filter(|l| !old.contains(l))
        .map(|l| format!("+ {l}"));
    let lines: Vec<_> = gone.chain(came).collect();
    if lines.is_empty() {
        return "(the same lines in another order)".into();
    }
    lines.join("\n")
}

#[test]
fn the_public_api_is_the_checked_in_listing() {
    let listing = match listing() {
        Ok(listing) => listing,
        Err(why) => return not_run(&why),
    };
    assert!(
        listing.contains("pub fn seamless::started()"),
        "the listing names the API:\n{listing}"
    );
    let path = root().join("seamless/api.txt");
    if std::env::var_os("SEAMLESS_BLESS_API").is_some() {
        std::fs::write(&path, &listing).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == listing,
        "the public API changed; if that is intended, run \
         SEAMLESS_BLESS_API=1 cargo test --test public_api and commit seamless/api.txt:\n{}",
        diff(&kept, &listing)
    );
}
