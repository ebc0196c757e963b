//! The registry of this generation's named sockets: every socket obtained
//! through [`crate::net`] is kept here as a close-on-exec duplicate, with
//! the kind and address the program asked for, so that the generation can
//! hand it on through the handover endpoint (which sees it as a
//! [`Lookup`]).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::handover::{self, Lookup};

/// Named sockets, kept to be handed on.
pub(crate) struct Registry {
    entries: Mutex<Vec<Entry>>,
}

struct Entry {
    name: String,
    /// Kind and address as asked for, and our duplicate; `None` while the
    /// name is only reserved.
    socket: Option<(String, OwnedFd)>,
}

impl Registry {
    pub(crate) fn new() -> Arc<Registry> {
        Arc::new(Registry {
            entries: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every socket held: (name, kind and address), in the order obtained.
    pub(crate) fn list(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.socket.as_ref()?.0.clone())))
            .collect()
    }

    /// Claims `name`, so that no other socket of this process takes it;
    /// the claim lapses unless [`Reservation::fill`] is called.
    pub(crate) fn reserve(self: &Arc<Self>, name: &str) -> io::Result<Reservation> {
        handover::check_name(name)?;
        let mut entries = self.lock();
        if entries.iter().any(|e| e.name == name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a socket named {name:?} exists already in this process"),
            ));
        }
        entries.push(Entry {
            name: name.to_owned(),
            socket: None,
        });
        Ok(Reservation {
            registry: self.clone(),
            name: name.to_owned(),
            filled: false,
        })
    }
}

impl Lookup for Registry {
    fn lookup(&self, name: &str) -> io::Result<Option<(String, OwnedFd)>> {
        let entries = self.lock();
        let Some((address, fd)) = entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.socket.as_ref())
        else {
            return Ok(None);
        };
        Ok(Some((address.clone(), fd.try_clone()?)))
    }
}

/// The registry of this process, which the daemon's handover endpoint
/// serves.
pub(crate) fn registry() -> &'static Arc<Registry> {
    static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

/// A name claimed in a [`Registry`]; dropped unfilled, it frees the name.
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    name: String,
    filled: bool,
}

impl Reservation {
    /// Keeps a close-on-exec duplicate of `fd` under the reserved name,
    /// with `address`, the kind and address the program asked for.
    pub(crate) fn fill(mut self, address: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        let dup = fd.try_clone_to_owned()?;
        let mut entries = self.registry.lock();
        if let Some(entry) = entries.iter_mut().find(|e| e.name == self.name) {
            entry.socket = Some((address.to_owned(), dup));
            self.filled = true;
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.filled {
            self.registry
                .lock()
                .retain(|e| e.name != self.name || e.socket.is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    #[test]
    fn names_are_unique_bounded_and_freed_unless_filled() {
        let registry = Registry::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        registry
            .reserve("dup")
            .unwrap()
            .fill("x", listener.as_fd())
            .unwrap();
        let err = registry.reserve("dup").err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        for bad in ["", "a\nb", "nul\0", &"n".repeat(handover::MAX_NAME + 1)] {
            assert!(registry.reserve(bad).is_err(), "{bad:?}");
        }
        assert!(registry.reserve(&"n".repeat(handover::MAX_NAME)).is_ok());
        // Reserved but never filled, then released: unknown, and free.
        drop(registry.reserve("half").unwrap());
        assert!(registry.lookup("half").unwrap().is_none());
        assert!(registry.reserve("half").is_ok(), "the name was freed");
        let (address, _dup) = registry.lookup("dup").unwrap().unwrap();
        assert_eq!(address, "x");
        assert!(registry.lookup("unknown").unwrap().is_none());
        assert_eq!(registry.list(), [("dup".to_owned(), "x".to_owned())]);
    }
}
