//! Base images for local leases: a Debian root filesystem with OpenSSH, built once with
//! debootstrap, its ownership shifted into the leases' uid range, cached under the data
//! directory. Only images that exist here are offered.

use super::runner::UID_BASE;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Images this build knows how to make: (name, Debian suite).
pub const KNOWN_IMAGES: &[(&str, &str)] = &[("debian-12", "bookworm")];

/// Packages on top of the minimal base: the SSH server, and `ps` for people.
const PACKAGES: &str = "openssh-server,procps";

/// Raised whenever what goes into the LXD image changes, so a cached tarball of an older one is
/// not reused.
const LXD_IMAGE_REVISION: u32 = 2;

/// How long building an image usually takes (debootstrap of a minimal Debian from a mirror, and
/// the ownership shift), in seconds: what the command says, the docs say, and the first order
/// that has to wait for it is told.
pub const TYPICAL_BUILD_SECONDS: (u64, u64) = (30, 180);

/// The steps of a build, in order, as people call them.
const STEPS: [&str; 6] = [
    "downloading packages",
    "extracting packages",
    "installing the base system",
    "configuring packages",
    "preparing the image (ownership, keys)",
    "done",
];

/// Which step a debootstrap progress line belongs to, if it starts one.
fn step_of(line: &str) -> Option<usize> {
    let line = line.trim_start_matches("I: ");
    [
        ("Retriev", 0),
        ("Validat", 0),
        ("Extract", 1),
        ("Installing core", 2),
        ("Unpack", 2),
        ("Configur", 3),
    ]
    .iter()
    .find(|(prefix, _)| line.starts_with(prefix))
    .map(|(_, step)| *step)
}

/// A build moved to a new step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildStep {
    /// 1-based.
    pub number: usize,
    pub of: usize,
    pub what: &'static str,
    pub elapsed: std::time::Duration,
}

impl std::fmt::Display for BuildStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs();
        write!(
            f,
            "[{:>2}:{:02}] {}/{} {}",
            secs / 60,
            secs % 60,
            self.number,
            self.of,
            self.what
        )
    }
}

#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root filesystem of a built image.
    pub fn rootfs(&self, image: &str) -> PathBuf {
        self.root.join(image).join("rootfs")
    }

    fn marker(&self, image: &str) -> PathBuf {
        self.root.join(image).join("complete")
    }

    pub fn is_built(&self, image: &str) -> bool {
        self.marker(image).exists()
    }

    /// The images that are built and usable now.
    pub fn available(&self) -> Vec<String> {
        KNOWN_IMAGES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .filter(|n| self.is_built(n))
            .collect()
    }

    /// Builds `image` unless it is already built. `mirror` is the Debian archive to use (from the
    /// configuration, or else the one the host's own apt sources name). `progress` hears of each
    /// step as it starts (a handful, not debootstrap's hundreds of lines).
    pub async fn build(
        &self,
        image: &str,
        mirror: Option<&str>,
        progress: impl Fn(BuildStep),
    ) -> Result<PathBuf, String> {
        let suite = suite_of(image)?;
        if self.is_built(image) {
            return Ok(self.rootfs(image));
        }
        let mirror = mirror_or_hosts(mirror)?;
        let staging = self
            .root
            .join(format!("{image}.building-{}", std::process::id()));
        let step = Steps::new(progress);
        debootstrap(suite, PACKAGES, &staging, &mirror, &step).await?;
        let rootfs = staging.join("rootfs");
        remove_host_keys(&rootfs).map_err(|e| e.to_string())?;
        step.reached(4);
        shift_ownership(&rootfs).map_err(|e| format!("cannot shift ownership: {e}"))?;
        let final_dir = self.root.join(image);
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::rename(&staging, &final_dir).map_err(|e| e.to_string())?;
        std::fs::write(self.marker(image), suite).map_err(|e| e.to_string())?;
        step.reached(5);
        Ok(self.rootfs(image))
    }

    /// An LXD/Incus image of `image` (`unified` format: `metadata.yaml` and `rootfs/` in one
    /// tarball) for the `lxd` provisioner, built once into `<image>-lxd-r<revision>.tar.gz` here. It is the
    /// same debootstrap image with systemd as its init (LXD boots `/sbin/init`, which brings up
    /// loopback and starts sshd), unshifted (LXD maps ids itself), and with a drop-in that makes
    /// sshd generate only the host keys the storefront did not install.
    pub async fn build_lxd(
        &self,
        image: &str,
        mirror: Option<&str>,
        progress: impl Fn(BuildStep),
    ) -> Result<PathBuf, String> {
        let suite = suite_of(image)?;
        let tarball = self
            .root
            .join(format!("{image}-lxd-r{LXD_IMAGE_REVISION}.tar.gz"));
        if tarball.exists() {
            return Ok(tarball);
        }
        let mirror = mirror_or_hosts(mirror)?;
        let staging = self
            .root
            .join(format!("{image}-lxd.building-{}", std::process::id()));
        let step = Steps::new(progress);
        let packages = format!("{PACKAGES},systemd-sysv");
        debootstrap(suite, &packages, &staging, &mirror, &step).await?;
        let rootfs = staging.join("rootfs");
        let write = |path: &str, contents: &str| {
            let path = rootfs.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, contents)
        };
        (|| -> std::io::Result<()> {
            remove_host_keys(&rootfs)?;
            // Each instance gets its identity at first boot; the host name is its own.
            write("etc/machine-id", "")?;
            let _ = std::fs::remove_file(rootfs.join("etc/hostname"));
            write("etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")?;
            write("etc/resolv.conf", "")?;
            write(
                "etc/systemd/system/ssh.service.d/10-storefront-keys.conf",
                "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
            )?;
            for cache in ["var/cache/apt/archives", "var/lib/apt/lists"] {
                for entry in std::fs::read_dir(rootfs.join(cache))?.flatten() {
                    if entry.path().is_file() {
                        std::fs::remove_file(entry.path())?;
                    }
                }
            }
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            std::fs::write(
                staging.join("metadata.yaml"),
                format!(
                    "architecture: {}\ncreation_date: {created}\nproperties:\n  description: Debian {suite} (storefront {image})\n  os: debian\n  release: {suite}\n",
                    std::env::consts::ARCH
                ),
            )
        })()
        .map_err(|e| format!("cannot prepare the LXD image: {e}"))?;
        step.reached(4);
        let partial = tarball.with_extension("partial");
        let packed = tokio::process::Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-czf"])
            .arg(&partial)
            .arg("-C")
            .arg(&staging)
            .args(["metadata.yaml", "rootfs"])
            .output()
            .await
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let _ = std::fs::remove_dir_all(&staging);
        if !packed.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(format!(
                "tar failed: {}",
                String::from_utf8_lossy(&packed.stderr).trim()
            ));
        }
        std::fs::rename(&partial, &tarball).map_err(|e| e.to_string())?;
        step.reached(5);
        Ok(tarball)
    }
}

fn suite_of(image: &str) -> Result<&'static str, String> {
    KNOWN_IMAGES
        .iter()
        .find(|(n, _)| *n == image)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            format!(
                "unknown image '{image}'; known: {}",
                KNOWN_IMAGES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn mirror_or_hosts(mirror: Option<&str>) -> Result<String, String> {
    match mirror {
        Some(m) => Ok(m.to_owned()),
        None => host_debian_mirror().ok_or_else(|| {
            "no Debian mirror in the host's apt sources; set image_mirror in the configuration"
                .to_owned()
        }),
    }
}

/// Tells a build's progress, with the time since it started.
struct Steps<F: Fn(BuildStep)> {
    started: std::time::Instant,
    report: F,
}

impl<F: Fn(BuildStep)> Steps<F> {
    fn new(report: F) -> Self {
        Self {
            started: std::time::Instant::now(),
            report,
        }
    }

    /// Step `index` (0-based, of `STEPS`) has started.
    fn reached(&self, index: usize) {
        (self.report)(BuildStep {
            number: index + 1,
            of: STEPS.len(),
            what: STEPS[index],
            elapsed: self.started.elapsed(),
        })
    }
}

/// Runs debootstrap of `suite` with `packages` into `staging/rootfs`, reporting its steps.
async fn debootstrap<F: Fn(BuildStep)>(
    suite: &str,
    packages: &str,
    staging: &Path,
    mirror: &str,
    step: &Steps<F>,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(staging);
    std::fs::create_dir_all(staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let mut child = tokio::process::Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={packages}"), suite])
        .arg(staging.join("rootfs"))
        .arg(mirror)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run debootstrap ({e}); install the 'debootstrap' package"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut current = None;
    while let Ok(Some(line)) = lines.next_line().await {
        // Steps only move forward: a late "Retrieving" line does not go back to step 1.
        if let Some(next) = step_of(&line).filter(|n| current.is_none_or(|c| *n > c)) {
            current = Some(next);
            step.reached(next);
        }
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(staging);
        return Err(format!(
            "debootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Each machine gets host keys of its own: the image carries none.
fn remove_host_keys(rootfs: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(rootfs.join("etc/ssh"))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Maps every file's owner `u` to `UID_BASE + u`, so that inside a lease (whose root is host uid
/// `UID_BASE`) files have their usual owners. chown clears set-uid bits, so modes are restored.
fn shift_ownership(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() < UID_BASE {
        lchown(
            path,
            Some(meta.uid() + UID_BASE),
            Some(meta.gid() + UID_BASE),
        )?;
        if !meta.file_type().is_symlink() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            shift_ownership(&entry?.path())?;
        }
    }
    Ok(())
}

/// The Debian archive the host's apt sources name (deb822 `.sources` files or `sources.list`),
/// excluding the security archive.
pub fn host_debian_mirror() -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "sources") {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    for line in text.lines() {
                        if let Some(uris) = line.strip_prefix("URIs:") {
                            candidates.extend(uris.split_whitespace().map(str::to_owned));
                        }
                    }
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("deb") {
                if let Some(uri) = words.find(|w| !w.starts_with('[')) {
                    candidates.push(uri.to_owned());
                }
            }
        }
    }
    candidates
        .into_iter()
        .find(|u| u.trim_end_matches('/').ends_with("/debian") && !u.contains("security"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstraps_lines_become_a_handful_of_steps() {
        let lines = [
            "I: Retrieving InRelease",
            "I: Checking Release signature",
            "I: Retrieving libc6 2.36",
            "I: Validating libc6 2.36",
            "I: Extracting base-files...",
            "I: Installing core packages...",
            "I: Unpacking required packages...",
            "I: Configuring required packages...",
            "I: Retrieving openssh-server",
            "I: Base system installed successfully.",
        ];
        let steps: Vec<usize> = lines.iter().filter_map(|l| step_of(l)).collect();
        assert_eq!(steps, [0, 0, 0, 1, 2, 2, 3, 0]);
        let shown = BuildStep {
            number: 2,
            of: STEPS.len(),
            what: STEPS[1],
            elapsed: std::time::Duration::from_secs(75),
        };
        assert_eq!(shown.to_string(), "[ 1:15] 2/6 extracting packages");
    }
}
