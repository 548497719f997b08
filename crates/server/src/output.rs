//! What the command line prints. A reader that goes away early (`storefront services | head -1`)
//! ends the program quietly, as other command-line tools do, instead of a panic with a stack
//! trace (Rust's `println!` panics on a closed pipe).

use std::io::Write;

/// Writes one line to standard output; on a closed pipe the program exits with status 0.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Anything else (a full disk behind a redirect) is worth saying, once.
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for the command line's output (see the module docs).
#[macro_export]
macro_rules! say {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
