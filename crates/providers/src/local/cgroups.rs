//! Control groups for leases: each lease's processes run in a cgroup of their own whose limits
//! follow the product (`MachineSize`), so a lease cannot take more CPU, memory or processes than
//! it bought. Both layouts are handled: cgroup v1 (one hierarchy per controller) and the unified
//! v2 hierarchy. The storefront creates `storefront-leases/<lease id>` under its own cgroup; the
//! lease runner writes the limits and moves the lease in before its first process starts.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use storefront_domain::catalog::MachineSize;

/// The scheduler period a CPU quota is counted in (the kernel's default, 100 ms).
const CPU_PERIOD_MICROS: u64 = 100_000;

/// One cgroup directory to create for a lease, the files to write in it (in order), and the file
/// that takes the lease's first process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupSetting {
    pub dir: PathBuf,
    pub writes: Vec<(String, String)>,
    pub procs_file: String,
}

#[derive(Debug, Clone)]
enum Layout {
    /// cgroup v1: where each controller's `storefront-leases` directory is, or why it is not.
    V1 {
        memory: Result<PathBuf, String>,
        cpu: Result<PathBuf, String>,
        pids: Result<PathBuf, String>,
    },
    /// cgroup v2: the `storefront-leases` directory with the controllers enabled for its children.
    V2(Result<PathBuf, String>),
}

/// What this host lets the storefront enforce, probed once at start.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
}

const LEASES: &str = "storefront-leases";

impl Cgroups {
    pub fn probe() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let v2_root = mountinfo
            .lines()
            .filter_map(parse_mount)
            .find(|m| {
                m.fstype == "cgroup2" && Path::new(&m.point).join("cgroup.controllers").exists()
            })
            .filter(|_| !has_v1_controllers(&mountinfo));
        let layout = match v2_root {
            Some(mount) => Layout::V2(prepare_v2(&mount, &membership)),
            None => Layout::V1 {
                memory: prepare_v1(&mountinfo, &membership, "memory"),
                cpu: prepare_v1(&mountinfo, &membership, "cpu"),
                pids: prepare_v1(&mountinfo, &membership, "pids"),
            },
        };
        Self { layout }
    }

    /// Nothing enforced, for a host where local machines do not run at all.
    pub fn unavailable(why: &str) -> Self {
        let why = || Err(why.to_owned());
        Self {
            layout: Layout::V1 {
                memory: why(),
                cpu: why(),
                pids: why(),
            },
        }
    }

    /// The cgroups a lease of `size` runs in, with its limits; empty when nothing can be enforced.
    pub fn settings(&self, lease: &str, size: &MachineSize) -> Vec<CgroupSetting> {
        let memory = (size.memory_mib * 1024 * 1024).to_string();
        let quota = u64::from(size.vcpus) * CPU_PERIOD_MICROS;
        let processes = size.max_processes.to_string();
        match &self.layout {
            Layout::V1 {
                memory: m,
                cpu,
                pids,
            } => {
                let mut settings = Vec::new();
                if let Ok(base) = m {
                    let dir = base.join(lease);
                    let mut writes = vec![("memory.limit_in_bytes".into(), memory.clone())];
                    // Without swap accounting a lease could page its excess out instead of
                    // being held to its size; the file exists only where that accounting is on.
                    if base.join("memory.memsw.limit_in_bytes").exists() {
                        writes.push(("memory.memsw.limit_in_bytes".into(), memory));
                    }
                    settings.push(CgroupSetting {
                        dir,
                        writes,
                        procs_file: "cgroup.procs".into(),
                    });
                }
                if let Ok(base) = cpu {
                    settings.push(CgroupSetting {
                        dir: base.join(lease),
                        writes: vec![
                            ("cpu.cfs_period_us".into(), CPU_PERIOD_MICROS.to_string()),
                            ("cpu.cfs_quota_us".into(), quota.to_string()),
                        ],
                        procs_file: "cgroup.procs".into(),
                    });
                }
                if let Ok(base) = pids {
                    settings.push(CgroupSetting {
                        dir: base.join(lease),
                        writes: vec![("pids.max".into(), processes)],
                        procs_file: "cgroup.procs".into(),
                    });
                }
                settings
            }
            Layout::V2(Ok(base)) => {
                let mut writes = vec![
                    ("memory.max".into(), memory),
                    ("cpu.max".into(), format!("{quota} {CPU_PERIOD_MICROS}")),
                    ("pids.max".into(), processes),
                ];
                // Present only where the kernel accounts swap.
                if base.join("memory.swap.max").exists() {
                    writes.push(("memory.swap.max".into(), "0".into()));
                }
                vec![CgroupSetting {
                    dir: base.join(lease),
                    writes,
                    procs_file: "cgroup.procs".into(),
                }]
            }
            Layout::V2(Err(_)) => Vec::new(),
        }
    }

    /// Removes a lease's cgroups (they are empty once the lease has stopped).
    pub fn remove(&self, lease: &str) {
        for base in self.bases() {
            let _ = std::fs::remove_dir(base.join(lease));
        }
    }

    fn bases(&self) -> Vec<&PathBuf> {
        match &self.layout {
            Layout::V1 { memory, cpu, pids } => [memory, cpu, pids]
                .into_iter()
                .filter_map(|r| r.as_ref().ok())
                .collect(),
            Layout::V2(base) => base.iter().collect(),
        }
    }

    /// Whether each limit is enforced here, and how (or why not).
    pub fn report(&self) -> [(&'static str, Result<String, String>); 3] {
        let how = |r: &Result<PathBuf, String>, what: &str| match r {
            Ok(dir) => Ok(format!("{what} ({})", dir.display())),
            Err(why) => Err(why.clone()),
        };
        match &self.layout {
            Layout::V1 { memory, cpu, pids } => [
                (
                    "memory",
                    how(
                        memory,
                        "cgroup v1 memory limit, swap included where accounted",
                    ),
                ),
                (
                    "cpu",
                    how(cpu, "cgroup v1 CFS quota of the product's vCPUs"),
                ),
                ("processes", how(pids, "cgroup v1 pids limit")),
            ],
            Layout::V2(base) => [
                ("memory", how(base, "cgroup v2 memory.max, no swap")),
                ("cpu", how(base, "cgroup v2 cpu.max of the product's vCPUs")),
                ("processes", how(base, "cgroup v2 pids.max")),
            ],
        }
    }
}

struct Mount {
    root: String,
    point: String,
    fstype: String,
    super_options: String,
}

/// One line of `/proc/self/mountinfo`: `id parent major:minor root point options [tags] - fstype
/// source super_options`.
fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let after: Vec<&str> = after.split(' ').collect();
    Some(Mount {
        root: fields.get(3)?.to_string(),
        point: fields.get(4)?.replace("\\040", " "),
        fstype: after.first()?.to_string(),
        super_options: after.get(2).unwrap_or(&"").to_string(),
    })
}

fn has_v1_controllers(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(parse_mount)
        .any(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory"))
}

/// Where this process sits in the hierarchy `key` names (`memory`, or empty for v2), from
/// `/proc/self/cgroup` (`id:controllers:path`).
fn own_path<'a>(membership: &'a str, key: &str) -> Option<&'a str> {
    membership.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if key.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == key)
        };
        matches.then_some(path)
    })
}

/// The directory of the storefront's own cgroup in a hierarchy mounted at `mount`.
fn own_dir(mount: &Mount, path: &str) -> PathBuf {
    // A mount of a sub-tree (inside a container) shows paths relative to its root.
    let relative = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
    Path::new(&mount.point).join(relative.trim_start_matches('/'))
}

fn prepare_v1(mountinfo: &str, membership: &str, controller: &str) -> Result<PathBuf, String> {
    let mount = mountinfo
        .lines()
        .filter_map(parse_mount)
        .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller))
        .ok_or_else(|| format!("the host has no cgroup v1 {controller} controller mounted"))?;
    let path = own_path(membership, controller)
        .ok_or_else(|| format!("this process is in no {controller} cgroup"))?;
    let base = own_dir(&mount, path).join(LEASES);
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    Ok(base)
}

fn prepare_v2(mount: &Mount, membership: &str) -> Result<PathBuf, String> {
    let path = own_path(membership, "").ok_or("this process is in no cgroup v2 group")?;
    let own = own_dir(mount, path);
    let available = std::fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    for needed in ["memory", "cpu", "pids"] {
        if !available.split_whitespace().any(|c| c == needed) {
            return Err(format!(
                "the {needed} controller is not delegated to {} (with systemd: Delegate=yes)",
                own.display()
            ));
        }
    }
    // A v2 group with processes cannot hand controllers to children ("no internal processes"):
    // the storefront moves itself into a leaf of its own first.
    let enable =
        |dir: &Path| std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu +pids");
    if enable(&own).is_err() {
        let leaf = own.join("storefront");
        std::fs::create_dir_all(&leaf)
            .and_then(|()| {
                std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
            })
            .and_then(|()| enable(&own))
            .map_err(|e| format!("cannot enable controllers under {}: {e}", own.display()))?;
    }
    let base = own.join(LEASES);
    std::fs::create_dir_all(&base)
        .and_then(|()| enable(&base))
        .map_err(|e| format!("cannot prepare {}: {e}", base.display()))?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_lines_and_memberships_are_read_as_the_kernel_writes_them() {
        let line = "35 25 0:30 /process_api /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory";
        let mount = parse_mount(line).unwrap();
        assert_eq!(
            (mount.fstype.as_str(), mount.super_options.as_str()),
            ("cgroup", "rw,memory")
        );
        let membership = "4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/user.slice\n";
        assert_eq!(own_path(membership, "memory"), Some("/process_api/abc"));
        assert_eq!(own_path(membership, "cpu"), Some("/x"));
        assert_eq!(own_path(membership, ""), Some("/user.slice"));
        assert_eq!(
            own_dir(&mount, "/process_api/abc"),
            PathBuf::from("/sys/fs/cgroup/memory/abc"),
            "a mount of a sub-tree shows paths relative to its root"
        );
    }

    #[test]
    fn limits_follow_the_machine_size() {
        let cgroups = Cgroups {
            layout: Layout::V2(Ok(PathBuf::from("/cg/storefront-leases"))),
        };
        let size = MachineSize {
            vcpus: 2,
            memory_mib: 1024,
            disk_gib: 10,
            max_processes: 512,
        };
        let settings = cgroups.settings("svc_1", &size);
        assert_eq!(
            settings[0].dir,
            PathBuf::from("/cg/storefront-leases/svc_1")
        );
        let value = |name: &str| {
            settings[0]
                .writes
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("memory.max"), Some("1073741824"));
        assert_eq!(value("cpu.max"), Some("200000 100000"));
        assert_eq!(value("pids.max"), Some("512"));
    }
}
