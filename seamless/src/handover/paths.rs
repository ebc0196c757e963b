//! Where a generation's endpoint lives: `<pid file>.<pid>.ctl` from
//! start-up to exit, linked at `<pid file>.handover` while it hands over,
//! with names that fit a socket address however long the pid file's.

use std::io;
use std::path::{Path, PathBuf};

use crate::sys;

/// Where the previous generation's endpoint is linked at stage 1:
/// `<pid_file>.handover`, next to it. A file name too long to be reached
/// as a socket address even through a directory fd (see
/// [`sys::SocketPath`]) is replaced by `.<hash>.handover`, the same in
/// every generation.
pub(crate) fn endpoint_path(pid_file: &Path) -> PathBuf {
    sys::parent(pid_file).join(short_name(pid_file, ".handover"))
}

/// Where the generation `pid` keeps its endpoint from start-up to exit:
/// `<pid_file>.<pid>.ctl` (or `.<hash>.<pid>.ctl`, see [`endpoint_path`]).
pub(crate) fn control_path(pid_file: &Path, pid: i32) -> PathBuf {
    sys::parent(pid_file).join(short_name(pid_file, &format!(".{pid}.ctl")))
}

/// Every `(pid, path)` of a [`control_path`] of `pid_file` found in its
/// directory (alive or stale), sorted by pid.
pub(crate) fn control_paths(pid_file: &Path) -> io::Result<Vec<(i32, PathBuf)>> {
    let probe = short_name(pid_file, ".1.ctl");
    let prefix = probe.strip_suffix("1.ctl").unwrap_or_default().to_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sys::parent(pid_file))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .and_then(|n| n.strip_suffix(".ctl"))
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        found.push((pid, entry.path()));
    }
    found.sort();
    Ok(found)
}

pub(super) fn short_name(pid_file: &Path, suffix: &str) -> String {
    let base = pid_file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let name = format!("{base}{suffix}");
    if name.len() <= MAX_ENDPOINT_NAME && !base.contains(['\u{fffd}']) {
        return name;
    }
    // FNV-1a of the pid file's name: stable across builds and versions,
    // unlike std's hasher.
    let hash = pid_file
        .file_name()
        .unwrap_or_default()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!(".{hash:016x}{suffix}")
}

/// The longest endpoint file name: `/proc/self/fd/NNNNNNNN/` plus this
/// fits a socket address.
pub(super) const MAX_ENDPOINT_NAME: usize = sys::SUN_PATH_MAX - 24;
