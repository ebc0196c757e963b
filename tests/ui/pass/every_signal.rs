// Every signal the attribute accepts is a `seamless::Signal`: each module's
// `main` names one (the attribute takes any `fn main`, not only the
// crate's).

mod hup {
    #[seamless::daemon(pid_file = None, parent_signal = SIGHUP)]
    pub fn main() {}
}

mod int {
    #[seamless::daemon(pid_file = None, parent_signal = SIGINT)]
    pub fn main() {}
}

mod quit {
    #[seamless::daemon(pid_file = None, parent_signal = SIGQUIT)]
    pub fn main() {}
}

mod usr1 {
    #[seamless::daemon(pid_file = None, parent_signal = SIGUSR1)]
    pub fn main() {}
}

mod usr2 {
    #[seamless::daemon(pid_file = None, parent_signal = SIGUSR2)]
    pub fn main() {}
}

mod alrm {
    #[seamless::daemon(pid_file = None, parent_signal = SIGALRM)]
    pub fn main() {}
}

mod term {
    #[seamless::daemon(pid_file = None, parent_signal = SIGTERM)]
    pub fn main() {}
}

mod chld {
    #[seamless::daemon(pid_file = None, parent_signal = SIGCHLD)]
    pub fn main() {}
}

mod cont {
    #[seamless::daemon(pid_file = None, parent_signal = SIGCONT)]
    pub fn main() {}
}

mod winch {
    #[seamless::daemon(pid_file = None, parent_signal = SIGWINCH)]
    pub fn main() {}
}

mod urg {
    #[seamless::daemon(pid_file = None, parent_signal = SIGURG)]
    pub fn main() {}
}

mod io {
    #[seamless::daemon(pid_file = None, parent_signal = SIGIO)]
    pub fn main() {}
}

mod pwr {
    #[seamless::daemon(pid_file = None, parent_signal = SIGPWR)]
    pub fn main() {}
}

#[seamless::daemon(pid_file = None, parent_signal = "PWR")]
fn main() {
    // Not run: each would be a second start.
    let _ = [
        hup::main as fn(),
        int::main as fn(),
        quit::main as fn(),
        usr1::main as fn(),
        usr2::main as fn(),
        alrm::main as fn(),
        term::main as fn(),
        chld::main as fn(),
        cont::main as fn(),
        winch::main as fn(),
        urg::main as fn(),
        io::main as fn(),
        pwr::main as fn(),
    ];
}
