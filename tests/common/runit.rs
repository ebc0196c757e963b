//! runit's `runsv` supervising one testd service in a sandbox, for the
//! tests of the `seamless` tool and of the fleet playbook.

use std::path::Path;
use std::process::Command;

use super::{in_path, not_run, set_executable, GroupGuard, Sandbox};

/// Whether runsv and sv are installed; in CI their absence fails the
/// test, elsewhere it says loudly that it did not run.
#[track_caller]
pub(crate) fn installed() -> bool {
    let found = ["runsv", "sv"].into_iter().all(in_path);
    if !found {
        not_run("runit (runsv, sv) not installed (apt-get install runit)");
    }
    found
}

/// runsv running `<sandbox>/service`, whose run script runs `program`
/// with the sandbox's testd settings; killed with its process group (every
/// generation included) on drop.
pub(crate) struct Runsv {
    _process: GroupGuard,
}

impl Runsv {
    pub(crate) fn start(sb: &Sandbox, program: &Path) -> Runsv {
        let service = sb.dir.join("service");
        std::fs::create_dir_all(&service).unwrap();
        let run = format!(
            "#!/bin/sh\nexec env TESTD_PID_FILE='{}' TESTD_ADDR='127.0.0.1:{}' TESTD_EVENTS='{}' '{}' 2>>'{}'\n",
            sb.pid_file().display(),
            sb.port,
            sb.events_file().display(),
            program.display(),
            sb.dir.join("output-service").display()
        );
        std::fs::write(service.join("run"), run).unwrap();
        set_executable(&service.join("run"));
        let mut runsv = Command::new("runsv");
        runsv.arg(&service);
        Runsv {
            _process: GroupGuard::spawn(&mut runsv, &sb.dir.join("output-runsv")),
        }
    }
}
