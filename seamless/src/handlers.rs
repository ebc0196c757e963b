//! The handler registry: functions to run at each stage of a restart.
//!
//! Two sources feed it. Functions marked with `#[seamless::on_shutdown]`
//! and its siblings are collected at link time in [`linkme`] distributed
//! slices: no code runs before `main`, nothing is allocated, and a handler
//! is registered even if nothing else refers to it. Closures registered at
//! run time with [`on_shutdown`] and its siblings can capture state.
//!
//! Order, for each stage: the link-time handlers sorted by their full path
//! (`crate::module::function`), then the run-time closures in the order they
//! were registered. A handler that panics is reported and the next one
//! runs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use linkme::distributed_slice;

use crate::report;

/// A function registered at link time by a handler attribute.
#[doc(hidden)]
pub struct Handler {
    /// Full path of the function, for ordering and log lines.
    pub name: &'static str,
    pub run: fn(),
}

#[doc(hidden)]
#[distributed_slice]
pub static ON_SHUTDOWN: [Handler];

#[doc(hidden)]
#[distributed_slice]
pub static ON_SHUTDOWN_REQUEST: [Handler];

#[doc(hidden)]
#[distributed_slice]
pub static ON_CHILD_LAUNCH: [Handler];

/// The stage a handler belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Stage 1, in the old generation: a restart was requested.
    ShutdownRequest,
    /// Stage 3: the graceful shutdown.
    Shutdown,
    /// In the launcher, right after the daemon was started.
    ChildLaunch,
}

type Closure = Box<dyn FnOnce() + Send + 'static>;

static SHUTDOWN_CLOSURES: Mutex<Vec<Closure>> = Mutex::new(Vec::new());
static SHUTDOWN_REQUEST_CLOSURES: Mutex<Vec<Closure>> = Mutex::new(Vec::new());

fn closures(stage: Stage) -> Option<&'static Mutex<Vec<Closure>>> {
    match stage {
        Stage::Shutdown => Some(&SHUTDOWN_CLOSURES),
        Stage::ShutdownRequest => Some(&SHUTDOWN_REQUEST_CLOSURES),
        Stage::ChildLaunch => None,
    }
}

fn registered(stage: Stage) -> Vec<&'static Handler> {
    let slice: &'static [Handler] = match stage {
        Stage::Shutdown => &ON_SHUTDOWN,
        Stage::ShutdownRequest => &ON_SHUTDOWN_REQUEST,
        Stage::ChildLaunch => &ON_CHILD_LAUNCH,
    };
    let mut handlers: Vec<&'static Handler> = slice.iter().collect();
    handlers.sort_by_key(|h| h.name);
    handlers
}

/// Registers a closure to run at stage 3, the graceful shutdown (after the
/// functions marked `#[seamless::on_shutdown]`).
///
/// ```
/// let pool = std::sync::Arc::new(());
/// let handle = pool.clone();
/// seamless::on_shutdown(move || drop(handle));
/// ```
pub fn on_shutdown(f: impl FnOnce() + Send + 'static) {
    push(&SHUTDOWN_CLOSURES, Box::new(f));
}

/// Registers a closure to run at stage 1, when a restart was requested and
/// the next generation is about to start (after the functions marked
/// `#[seamless::on_shutdown_request]`). Release here what the next
/// generation needs; keep serving.
///
/// ```
/// seamless::on_shutdown_request(|| log::info!("a new generation is coming"));
/// ```
pub fn on_shutdown_request(f: impl FnOnce() + Send + 'static) {
    push(&SHUTDOWN_REQUEST_CLOSURES, Box::new(f));
}

fn push(list: &Mutex<Vec<Closure>>, f: Closure) {
    list.lock().unwrap_or_else(|e| e.into_inner()).push(f);
}

/// Runs every handler of `stage` in the documented order, calling
/// `running` with the name of each before it starts (so a hanging handler
/// can be named). Run-time closures run once: they are taken out.
pub(crate) fn run(stage: Stage, extra: Vec<Closure>, running: &dyn Fn(&str)) {
    for handler in registered(stage) {
        running(handler.name);
        guarded(handler.name, handler.run);
    }
    let mut taken = closures(stage)
        .map(|list| std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    taken.extend(extra);
    for (i, closure) in taken.into_iter().enumerate() {
        let name = format!("{} closure #{}", stage_name(stage), i + 1);
        running(&name);
        guarded(&name, closure);
    }
}

fn guarded(name: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        report::error!("handler {name} panicked; going on with the next one");
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Shutdown => "on_shutdown",
        Stage::ShutdownRequest => "on_shutdown_request",
        Stage::ChildLaunch => "on_child_launch",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    #[distributed_slice(ON_CHILD_LAUNCH)]
    static B: Handler = Handler {
        name: "tests::b",
        run: || ORDER.lock().unwrap().push("b"),
    };
    #[distributed_slice(ON_CHILD_LAUNCH)]
    static A: Handler = Handler {
        name: "tests::a",
        run: || panic!("a panicking handler does not stop the others"),
    };
    #[distributed_slice(ON_CHILD_LAUNCH)]
    static C: Handler = Handler {
        name: "tests::c",
        run: || ORDER.lock().unwrap().push("c"),
    };

    #[test]
    fn link_time_handlers_run_sorted_then_closures_in_order() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let names = Mutex::new(Vec::new());
        let s1 = seen.clone();
        let s2 = seen.clone();
        run(
            Stage::ChildLaunch,
            vec![
                Box::new(move || s1.lock().unwrap().push(1)),
                Box::new(move || s2.lock().unwrap().push(2)),
            ],
            &|n| names.lock().unwrap().push(n.to_owned()),
        );
        assert_eq!(*ORDER.lock().unwrap(), ["b", "c"]);
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
        let names = names.into_inner().unwrap();
        assert_eq!(names[..3], ["tests::a", "tests::b", "tests::c"]);
    }

    #[test]
    fn closures_run_once() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        on_shutdown_request(|| {
            COUNT.fetch_add(1, Ordering::SeqCst);
        });
        run(Stage::ShutdownRequest, Vec::new(), &|_| {});
        run(Stage::ShutdownRequest, Vec::new(), &|_| {});
        assert_eq!(COUNT.load(Ordering::SeqCst), 1);
    }
}
