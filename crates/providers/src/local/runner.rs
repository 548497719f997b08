//! The lease runner: `storefront lease-run SPEC_JSON`, a short-lived helper process the local
//! provisioner starts for each lease. It must run in a fresh, single-threaded process (it forks),
//! so the binary dispatches to [`main`] before it starts any runtime.
//!
//! Process tree (host view):
//!
//! ```text
//! storefront ── runner (host namespaces; writes the id maps; watches its stdin lifeline)
//!                 ├── creator (unshared: network, then user, mount, PID, UTS, IPC)
//!                 │      └── init = sshd -D (PID 1 of the lease)
//!                 └── slirp4netns (the lease's user-mode network; forwards the SSH port)
//! ```
//!
//! The network namespace is created before the user namespace, so it belongs to the host's
//! root and not to the lease's: root inside the lease cannot change its routes, and the routes
//! the creator installs refuse the destinations of `storefront_domain::egress`. slirp4netns
//! gives the namespace a NAT to the outside world without access to the host's loopback, and
//! forwards a host loopback port to the lease's sshd. The creator joins the lease's cgroups
//! (its limits) before it forks init, so every process of the lease is held to them.
//!
//! The creator and init die with their parent (`PR_SET_PDEATHSIG`), and every process of the lease
//! dies with init (PID 1 of its namespace). The runner kills the lease when its stdin closes, so a
//! lease never outlives the storefront process that owns it.
//!
//! This is the one module allowed `unsafe`: `fork` and borrowing a raw descriptor.
#![allow(unsafe_code)]

use super::cgroups::CgroupSetting;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    chdir, execv, fork, getppid, pivot_root, sethostname, setresgid, setresuid, ForkResult, Gid,
    Pid, Uid,
};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Host uids/gids `UID_BASE..UID_BASE+UID_COUNT` are the lease's `0..UID_COUNT`.
pub const UID_BASE: u32 = 100_000;
pub const UID_COUNT: u32 = 65_536;

/// What the runner needs to start one lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseSpec {
    /// The read-only base root filesystem (owned by the shifted uid range).
    pub image: PathBuf,
    /// The lease's directory: `upper/`, `work/` and `merged/` live here.
    pub dir: PathBuf,
    pub hostname: String,
    /// Host loopback port forwarded to the lease's sshd.
    pub port: u16,
    pub network: LeaseNetwork,
    /// The cgroups (and limits) the lease runs in; empty where the host enforces none.
    pub cgroups: Vec<CgroupSetting>,
}

/// The lease's own network: reached through slirp4netns, refused the blocked ranges.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseNetwork {
    pub slirp4netns: PathBuf,
    /// iproute2's `ip`, which installs the lease's routes.
    pub ip: PathBuf,
    /// slirp4netns's control socket (the SSH port forward is added through it).
    pub api_socket: PathBuf,
    /// Destination ranges (CIDR) refused inside the lease.
    pub blocked: Vec<String>,
}

/// The port sshd listens on inside the lease's network namespace.
const GUEST_SSH_PORT: u16 = 22;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("lease-run: {what}: {e}");
    std::process::exit(111)
}

/// Entry point of `storefront lease-run SPEC_JSON`. Never returns.
pub fn main(spec_json: &str) -> ! {
    let spec: LeaseSpec = serde_json::from_str(spec_json).unwrap_or_else(|e| fail("bad spec", e));
    let (mut ready_r, mut ready_w) = pipe_pair();
    let (mut go_r, mut go_w) = pipe_pair();
    // SAFETY: this process is single-threaded (the binary dispatches here before starting any
    // runtime), so the child may run arbitrary code after fork.
    match unsafe { fork() }.unwrap_or_else(|e| fail("fork", e)) {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            creator(&spec, &mut ready_w, &mut go_r)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            let mut byte = [0u8; 1];
            if ready_r.read_exact(&mut byte).is_err() {
                fail("namespaces", "the creator exited before unsharing");
            }
            let map = format!("0 {UID_BASE} {UID_COUNT}\n");
            std::fs::write(format!("/proc/{child}/uid_map"), &map)
                .unwrap_or_else(|e| fail("uid_map", e));
            std::fs::write(format!("/proc/{child}/gid_map"), &map)
                .unwrap_or_else(|e| fail("gid_map", e));
            join_cgroups(&spec.cgroups, child);
            let network = start_network(&spec, child);
            go_w.write_all(b"g").unwrap_or_else(|e| fail("sync", e));
            // The creator reports init's pid (as this namespace sees it) once it has forked it.
            let mut pid = [0u8; 4];
            ready_r
                .read_exact(&mut pid)
                .unwrap_or_else(|e| fail("init pid", e));
            supervise(
                &spec,
                child,
                Pid::from_raw(i32::from_le_bytes(pid)),
                network,
            )
        }
    }
}

/// A pipe closed on exec, so no program the runner starts (slirp4netns, sshd) holds it.
fn pipe_pair() -> (std::fs::File, std::fs::File) {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| fail("pipe", e));
    (std::fs::File::from(r), std::fs::File::from(w))
}

/// Creates the lease's cgroups, writes its limits and moves the creator in, before the lease's
/// first process exists (init and everything after it inherit the groups).
fn join_cgroups(cgroups: &[CgroupSetting], creator: Pid) {
    for group in cgroups {
        std::fs::create_dir_all(&group.dir)
            .unwrap_or_else(|e| fail(&format!("cgroup {}", group.dir.display()), e));
        for (file, value) in &group.writes {
            std::fs::write(group.dir.join(file), value)
                .unwrap_or_else(|e| fail(&format!("cgroup limit {file}={value}"), e));
        }
        std::fs::write(
            group.dir.join(&group.procs_file),
            creator.as_raw().to_string(),
        )
        .unwrap_or_else(|e| fail("joining the lease's cgroup", e));
    }
}

/// The lease's user-mode network: slirp4netns attached to the creator's network namespace, and
/// the SSH port forward. slirp4netns exits when the runner does (its exit pipe closes).
struct Network {
    slirp: std::process::Child,
    _exit_pipe: std::fs::File,
}

fn start_network(spec: &LeaseSpec, creator: Pid) -> Network {
    use std::os::unix::process::CommandExt;
    let net = &spec.network;
    let _ = std::fs::remove_file(&net.api_socket);
    let (exit_r, exit_w) = pipe_pair();
    let (mut ready_r, ready_w) = pipe_pair();
    let (exit_fd, ready_fd) = (exit_r.as_raw_fd(), ready_w.as_raw_fd());
    let mut command = std::process::Command::new(&net.slirp4netns);
    command
        .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
        // It parses the lease's packets as the host's root: a syscall filter confines it. (Its
        // `--enable-sandbox` is not used: its mount namespace unmounts, through mount
        // propagation, the host's named network namespaces under /run/netns.)
        .arg("--enable-seccomp")
        .args(["--netns-type=path", "--exit-fd", &exit_fd.to_string()])
        .args(["--ready-fd", &ready_fd.to_string(), "--api-socket"])
        .arg(&net.api_socket)
        .arg(format!("/proc/{creator}/ns/net"))
        .arg("tap0")
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls: fcntl on two descriptors, so
    // that exactly these two pipe ends survive the exec.
    unsafe {
        command.pre_exec(move || {
            for fd in [exit_fd, ready_fd] {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let slirp = command
        .spawn()
        .unwrap_or_else(|e| fail(&format!("start {}", net.slirp4netns.display()), e));
    drop(exit_r);
    drop(ready_w);
    let mut byte = [0u8; 1];
    if ready_r.read_exact(&mut byte).is_err() {
        fail(
            "network",
            "slirp4netns exited before configuring the lease's network",
        );
    }
    forward_ssh(&net.api_socket, spec.port);
    Network {
        slirp,
        _exit_pipe: exit_w,
    }
}

/// Asks slirp4netns (its JSON API) to forward host loopback `port` to the lease's sshd.
fn forward_ssh(api_socket: &Path, port: u16) {
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": port, "guest_port": GUEST_SSH_PORT}
    });
    let mut socket = std::os::unix::net::UnixStream::connect(api_socket)
        .unwrap_or_else(|e| fail("slirp4netns API", e));
    socket
        .write_all(request.to_string().as_bytes())
        .unwrap_or_else(|e| fail("slirp4netns API", e));
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    if !answer.contains("\"return\"") {
        fail("forwarding the SSH port", answer.trim());
    }
}

/// Ends the runner once the lease has stopped: its network and its cgroups go with it.
fn finish(spec: &LeaseSpec, network: &mut Network, code: i32) -> ! {
    let _ = network.slirp.kill();
    let _ = network.slirp.wait();
    let _ = std::fs::remove_file(&spec.network.api_socket);
    // The groups are empty once the creator has been reaped; a group the kernel is still
    // emptying is removed by the provisioner when the lease ends for good.
    for group in &spec.cgroups {
        let _ = std::fs::remove_dir(&group.dir);
    }
    std::process::exit(code)
}

/// Waits for the lease to end, or for the lifeline (stdin) to close, then ends it: killing init
/// (PID 1 of the lease) makes the kernel kill every process of the lease, and the creator's exit
/// confirms they are all gone, so the runner exits only once the lease has fully stopped.
fn supervise(spec: &LeaseSpec, child: Pid, init: Pid, mut network: Network) -> ! {
    let stdin = std::io::stdin();
    let fd = stdin.as_raw_fd();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => finish(spec, &mut network, code),
            Ok(WaitStatus::Signaled(..)) => finish(spec, &mut network, 137),
            Ok(_) => {}
            Err(e) => fail("waitpid", e),
        }
        // SAFETY: stdin stays open for the life of the process.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut fds = [nix::poll::PollFd::new(
            borrowed,
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap_or(0);
        if ready > 0 {
            let mut buf = [0u8; 64];
            // EOF (or an error) means the owner is gone or asked us to stop.
            if matches!(std::io::stdin().read(&mut buf), Ok(0) | Err(_)) {
                let _ = kill(init, Signal::SIGKILL);
                let _ = waitpid(child, None);
                finish(spec, &mut network, 0);
            }
        }
    }
}

/// Unshares the namespaces, waits for the id maps, then forks the lease's init.
fn creator(spec: &LeaseSpec, ready: &mut std::fs::File, go: &mut std::fs::File) -> ! {
    let runner = getppid();
    let _ = set_pdeathsig(Signal::SIGKILL);
    // The network namespace first, while this process is still the host's root: it then belongs
    // to the host's user namespace, and the lease's root cannot undo what is set up here.
    unshare(CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| fail("unshare network", e));
    configure_network(&spec.network);
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    unshare(flags).unwrap_or_else(|e| fail("unshare", e));
    ready.write_all(b"r").unwrap_or_else(|e| fail("sync", e));
    let mut byte = [0u8; 1];
    go.read_exact(&mut byte).unwrap_or_else(|e| fail("sync", e));
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .unwrap_or_else(|e| fail("setresgid", e));
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .unwrap_or_else(|e| fail("setresuid", e));
    // Changing the effective uid clears the parent-death signal (prctl(2)), and a runner killed
    // outright (SIGKILL, the OOM killer) would leave this process and the lease's init running
    // with their overlay mount busy: set it again, then make sure the runner did not die in
    // between.
    let _ = set_pdeathsig(Signal::SIGKILL);
    if getppid() != runner {
        std::process::exit(137);
    }
    // SAFETY: still single-threaded.
    match unsafe { fork() }.unwrap_or_else(|e| fail("fork", e)) {
        ForkResult::Child => init(spec),
        ForkResult::Parent { child } => {
            ready
                .write_all(&child.as_raw().to_le_bytes())
                .unwrap_or_else(|e| fail("sync", e));
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                    Ok(WaitStatus::Signaled(..)) => std::process::exit(137),
                    Ok(_) => continue,
                    Err(e) => fail("waitpid", e),
                }
            }
        }
    }
}

/// The `ip -batch` commands that fence a lease's network in (see `configure_network`).
fn network_commands(network: &LeaseNetwork) -> String {
    let mut commands = String::from("link set lo up\n");
    for range in &network.blocked {
        commands.push_str(&format!("route replace prohibit {range}\n"));
    }
    for (priority, protocol) in [(100, "udp"), (101, "tcp")] {
        commands.push_str(&format!(
            "rule add priority {priority} to {SLIRP_DNS} ipproto {protocol} dport 53 lookup main\n"
        ));
    }
    commands.push_str(&format!("rule add priority 102 to {SLIRP_DNS} prohibit\n"));
    commands
}

/// slirp4netns's resolver address (its default network is 10.0.2.0/24): it relays to the host's
/// resolver, whatever port is asked, so only DNS may go there.
const SLIRP_DNS: &str = "10.0.2.3";

/// Inside the new network namespace: loopback up, the blocked ranges refused by `prohibit`
/// routes (which slirp4netns's more specific route to its own network does not shadow), its
/// resolver address limited to DNS by routing rules, and every port bindable by the lease's users
/// (the namespace's owner is the host, so the lease's root would otherwise lack the right to bind
/// port 22). slirp4netns itself refuses its gateway address (`--disable-host-loopback`).
fn configure_network(network: &LeaseNetwork) {
    let commands = network_commands(network);

    let mut ip = std::process::Command::new(&network.ip)
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail("run ip (iproute2)", e));
    if let Some(mut stdin) = ip.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .unwrap_or_else(|e| fail("ip", e));
    }
    match ip.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => fail("routes of the lease", status),
        Err(e) => fail("ip", e),
    }
    for (setting, value) in [
        ("ipv4/ip_unprivileged_port_start", "0".to_owned()),
        // Lets the lease's users ping (the lease's gids, as the host numbers them).
        (
            "ipv4/ping_group_range",
            format!("{UID_BASE} {}", UID_BASE + UID_COUNT - 1),
        ),
    ] {
        std::fs::write(format!("/proc/sys/net/{setting}"), value)
            .unwrap_or_else(|e| fail(&format!("sysctl net.{setting}"), e));
    }
}

fn mount_or_fail(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) {
    mount(Some(source), target, fstype, flags, data)
        .unwrap_or_else(|e| fail(&format!("mount {}", target.display()), e));
}

/// PID 1 of the lease: builds its root filesystem and becomes sshd.
fn init(spec: &LeaseSpec) -> ! {
    let _ = set_pdeathsig(Signal::SIGKILL);
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .unwrap_or_else(|e| fail("make / private", e));
    let merged = spec.dir.join("merged");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        spec.image.display(),
        spec.dir.join("upper").display(),
        spec.dir.join("work").display()
    );
    mount_or_fail(
        "overlay",
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    );
    mount_or_fail(
        "proc",
        &merged.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );
    for dir in ["run", "tmp", "dev"] {
        let _ = std::fs::create_dir_all(merged.join(dir));
    }
    mount_or_fail(
        "tmpfs",
        &merged.join("run"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    );
    mount_or_fail(
        "tmpfs",
        &merged.join("dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755"),
    );
    for device in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = merged.join("dev").join(device);
        std::fs::File::create(&target).unwrap_or_else(|e| fail("create device node", e));
        mount_or_fail(
            &format!("/dev/{device}"),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    let pts = merged.join("dev/pts");
    let _ = std::fs::create_dir_all(&pts);
    mount_or_fail(
        "devpts",
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    );
    let _ = std::os::unix::fs::symlink("pts/ptmx", merged.join("dev/ptmx"));
    let _ = std::fs::create_dir_all(merged.join("dev/shm"));
    mount_or_fail(
        "tmpfs",
        &merged.join("dev/shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    );
    sethostname(&spec.hostname).unwrap_or_else(|e| fail("sethostname", e));

    // Swap the root: nothing of the host (the storefront's data, other leases) stays reachable.
    let old = merged.join(".oldroot");
    let _ = std::fs::create_dir_all(&old);
    pivot_root(&merged, &old).unwrap_or_else(|e| fail("pivot_root", e));
    chdir("/").unwrap_or_else(|e| fail("chdir", e));
    umount2("/.oldroot", MntFlags::MNT_DETACH).unwrap_or_else(|e| fail("umount old root", e));
    let _ = std::fs::remove_dir("/.oldroot");
    let _ = std::fs::create_dir_all("/run/sshd");

    let args: Vec<CString> = [
        "/usr/sbin/sshd".to_owned(),
        "-D".to_owned(),
        "-e".to_owned(),
        "-o".to_owned(),
        format!("Port={GUEST_SSH_PORT}"),
        "-o".to_owned(),
        "HostKey=/etc/ssh/ssh_host_ed25519_key".to_owned(),
        "-o".to_owned(),
        "UsePAM=no".to_owned(),
        "-o".to_owned(),
        "PasswordAuthentication=no".to_owned(),
        "-o".to_owned(),
        "KbdInteractiveAuthentication=no".to_owned(),
        "-o".to_owned(),
        "PermitRootLogin=prohibit-password".to_owned(),
    ]
    .into_iter()
    .map(|a| CString::new(a).expect("no NUL in arguments"))
    .collect();
    let err = execv(&args[0], &args).unwrap_err();
    fail("exec sshd", err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_refuses_the_blocked_ranges_and_all_but_dns_to_slirps_resolver() {
        let network = LeaseNetwork {
            slirp4netns: "slirp4netns".into(),
            ip: "ip".into(),
            api_socket: "slirp.sock".into(),
            blocked: vec!["10.0.0.0/8".into(), "169.254.0.0/16".into()],
        };
        let commands = network_commands(&network);
        let lines: Vec<&str> = commands.lines().collect();
        assert_eq!(
            lines,
            [
                "link set lo up",
                "route replace prohibit 10.0.0.0/8",
                "route replace prohibit 169.254.0.0/16",
                "rule add priority 100 to 10.0.2.3 ipproto udp dport 53 lookup main",
                "rule add priority 101 to 10.0.2.3 ipproto tcp dport 53 lookup main",
                "rule add priority 102 to 10.0.2.3 prohibit",
            ],
            "DNS is let through before everything else to the resolver address is refused"
        );
    }
}
