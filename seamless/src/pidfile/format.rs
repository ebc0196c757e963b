//! The pid file's text: a plain pid for monitoring tools, then one
//! identity line per recorded generation. Pure: parse and render.

use crate::procfs::ProcessIdentity;

pub(super) const MAGIC: &str = "seamless-v1";
pub(super) const MAX_ENTRIES: usize = 64;
const MAX_BOOT_ID: usize = 64;

/// What a recorded generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Newest,
    Detached,
}

/// One identity line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) standing: Standing,
    pub(crate) identity: ProcessIdentity,
}

/// What a pid file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The first line, when it is a plain pid > 1 (never signalled by
    /// itself: only logged).
    pub(crate) first_line: Option<i32>,
    /// Well-formed identity lines with a pid > 1, at most one per pid, at
    /// most 64.
    pub(crate) entries: Vec<Entry>,
}

/// Parses pid file content. Never panics; never yields a pid <= 1.
/// Malformed lines are skipped.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let first_line = lines
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    let mut entries: Vec<Entry> = Vec::new();
    for entry in lines.filter_map(parse_line) {
        if entries.len() >= MAX_ENTRIES {
            break;
        }
        if entries.iter().all(|e| e.identity.pid != entry.identity.pid) {
            entries.push(entry);
        }
    }
    Parsed {
        first_line,
        entries,
    }
}

pub(super) fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split_whitespace();
    if f.next()? != MAGIC {
        return None;
    }
    let standing = match f.next()? {
        "newest" => Standing::Newest,
        "detached" => Standing::Detached,
        _ => return None,
    };
    let pid: i32 = f.next()?.parse().ok()?;
    let start_time: u64 = f.next()?.parse().ok()?;
    let boot_id = f.next()?;
    if pid <= 1 || f.next().is_some() || boot_id.len() > MAX_BOOT_ID {
        return None;
    }
    Some(Entry {
        standing,
        identity: ProcessIdentity {
            pid,
            start_time,
            boot_id: boot_id.to_owned(),
        },
    })
}

pub(super) fn render(entries: &[Entry]) -> String {
    let first = entries
        .iter()
        .find(|e| e.standing == Standing::Newest)
        .or(entries.first())
        .map(|e| e.identity.pid)
        .unwrap_or(0);
    let mut out = format!("{first}\n");
    for e in entries {
        let standing = match e.standing {
            Standing::Newest => "newest",
            Standing::Detached => "detached",
        };
        let id = &e.identity;
        out += &format!(
            "{MAGIC} {standing} {} {} {}\n",
            id.pid, id.start_time, id.boot_id
        );
    }
    out
}
