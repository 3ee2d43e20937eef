//! Locking the process's memory so that keys and secrets are never written to swap, and the
//! one other process-wide signal setting the binary needs (SIGPIPE for the CLI).
//!
//! This is the workspace's one reviewed exception to `unsafe_code = "deny"`: `mlockall` has
//! no safe wrapper in the dependencies we already have, and the call itself touches no Rust
//! memory (it takes two flags and returns an int). Failure is reported, not fatal, because
//! unprivileged users and containers often lack `CAP_IPC_LOCK`; operators who accept that
//! set `disable_mlock = true` to silence the warning, as with Vault.

/// Locks all current and future pages in memory. Returns the OS error when it fails.
#[allow(unsafe_code)]
pub fn lock_all_memory() -> Result<(), std::io::Error> {
    // SAFETY: mlockall takes only integer flags, reads and writes no memory owned by Rust,
    // and has no preconditions; its failure is reported through the return value and errno.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Restores the default action of SIGPIPE (terminate quietly), which the Rust runtime sets
/// to "ignore". A command-line tool piped into `head` should stop when the pipe closes, as
/// every Unix tool does, instead of failing with an EPIPE panic on its next print.
///
/// The second reviewed `unsafe` call of this module, for the same reason as `mlockall`:
/// `signal` takes two integers and touches no Rust memory.
#[allow(unsafe_code)]
pub fn default_sigpipe() {
    // SAFETY: signal() with SIG_DFL installs no Rust handler and reads or writes no memory
    // owned by Rust; it is called once at start, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
