//! Just enough of a ustar writer for a small root filesystem (directories, files, symlinks
//! with short names). No tar crate is in the dependency tree, and this needs none of one's
//! reading or long-name support.

use agp_contracts::sandbox::SandboxError;

#[derive(Default)]
pub(crate) struct TarBuilder {
    out: Vec<u8>,
}

impl TarBuilder {
    pub(crate) fn dir(&mut self, path: &str, mode: u32, owner: u32) {
        // Directory names here are fixed and short.
        let _ = self.entry(&format!("{path}/"), mode, owner, b'5', 0, "");
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), SandboxError> {
        self.entry(path, mode, 0, b'0', data.len(), "")?;
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.resize(self.out.len() + pad, 0);
        Ok(())
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> Result<(), SandboxError> {
        self.entry(path, 0o777, 0, b'2', 0, target)
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        self.out
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        owner: u32,
        kind: u8,
        size: usize,
        link: &str,
    ) -> Result<(), SandboxError> {
        if path.len() >= 100 || link.len() >= 100 {
            return Err(SandboxError::Refused(format!(
                "name too long for the image tar: {path}"
            )));
        }
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], u64::from(owner));
        octal(&mut h[116..124], u64::from(owner));
        octal(&mut h[124..136], size as u64);
        octal(&mut h[136..148], 0);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..155], sum);
        self.out.extend_from_slice(&h);
        Ok(())
    }
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_tar_reads_it_back() {
        let mut t = TarBuilder::default();
        t.dir("bin", 0o755, 0);
        t.file("bin/hello", 0o755, b"hi there").unwrap();
        t.symlink("bin/sh", "hello").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.tar");
        std::fs::write(&file, t.finish()).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("bin/hello"), "{listing}");
        assert!(listing.contains("bin/sh -> hello"), "{listing}");
        assert!(listing.contains("rwxr-xr-x"), "{listing}");
    }
}
