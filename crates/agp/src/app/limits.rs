//! `[sandbox.limits]` of config.toml: the session-wide resource bounds of proxy-exec sandboxes.
//! Sizes are bytes, as an integer or a string with a unit (`"512MiB"`, `"4GiB"`, `"2G"`).
//! A key left out keeps agp's default; `0` is refused (it would stop every command).

use agp_contracts::sandbox::ResourceLimits;
use anyhow::{bail, Result};

/// A size or count as written in config.toml.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Number(u64),
    Text(String),
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Memory of the whole session (memory cgroup).
    pub memory_bytes: Option<Amount>,
    /// Address space of each process (RLIMIT_AS).
    pub process_memory_bytes: Option<Amount>,
    /// Processes alive at once in the session (pids cgroup).
    pub processes: Option<Amount>,
    /// CPU seconds of each process (RLIMIT_CPU).
    pub cpu_seconds: Option<Amount>,
    /// Size of each per-command tmpfs (/tmp, HOME).
    pub tmpfs_bytes: Option<Amount>,
    /// How much the repository may grow over a session.
    pub repo_growth_bytes: Option<Amount>,
    /// CPUs the whole session may use at once (`1.5`, `"0.5"`, `2`; the container
    /// provider's CPU quota), to a thousandth of a CPU.
    pub cpus: Option<Cpus>,
}

/// A CPU count as written in config.toml: an integer, a decimal, or either as a string.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Cpus {
    Whole(u64),
    Decimal(f64),
    Text(String),
}

/// Thousandths of a CPU; `0` and more than three decimals are refused.
fn parse_cpus(cpus: &Cpus) -> Result<u64> {
    let text = match cpus {
        Cpus::Whole(n) => n.to_string(),
        Cpus::Decimal(f) => f.to_string(),
        Cpus::Text(t) => t.trim().to_string(),
    };
    let bad = || {
        anyhow::anyhow!(
            "[sandbox.limits] cpus = {text:?} is not a CPU count (e.g. 2, 1.5 or \"0.25\")"
        )
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 3
    {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let millis = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if millis == 0 {
        bail!("[sandbox.limits] cpus must be greater than 0 (leave it out for agp's default)");
    }
    Ok(millis)
}

fn parse(key: &str, amount: &Amount) -> Result<u64> {
    let value = match amount {
        Amount::Number(n) => *n,
        Amount::Text(text) => {
            let t = text.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, unit) = t.split_at(split);
            let n: u64 = digits.parse().map_err(|_| {
                anyhow::anyhow!("[sandbox.limits] {key} = {text:?} is not a number with a unit")
            })?;
            let factor: u64 = match unit.trim() {
                "" | "B" => 1,
                "K" | "KiB" | "k" => 1 << 10,
                "M" | "MiB" => 1 << 20,
                "G" | "GiB" => 1 << 30,
                "T" | "TiB" => 1 << 40,
                other => bail!(
                    "[sandbox.limits] {key} = {text:?}: unknown unit {other:?} (use KiB, MiB, GiB or TiB)"
                ),
            };
            n.checked_mul(factor)
                .ok_or_else(|| anyhow::anyhow!("[sandbox.limits] {key} = {text:?} is too large"))?
        }
    };
    if value == 0 {
        bail!("[sandbox.limits] {key} must be greater than 0 (leave it out for agp's default)");
    }
    Ok(value)
}

impl LimitsSection {
    /// Override `limits` with what the section sets.
    pub fn apply(&self, limits: &mut ResourceLimits) -> Result<()> {
        let fields: [(&str, &Option<Amount>, &mut Option<u64>); 6] = [
            (
                "memory_bytes",
                &self.memory_bytes,
                &mut limits.session_memory_bytes,
            ),
            (
                "process_memory_bytes",
                &self.process_memory_bytes,
                &mut limits.max_memory_bytes,
            ),
            ("processes", &self.processes, &mut limits.max_processes),
            (
                "cpu_seconds",
                &self.cpu_seconds,
                &mut limits.max_cpu_seconds,
            ),
            ("tmpfs_bytes", &self.tmpfs_bytes, &mut limits.tmpfs_bytes),
            (
                "repo_growth_bytes",
                &self.repo_growth_bytes,
                &mut limits.repo_growth_bytes,
            ),
        ];
        for (key, set, into) in fields {
            if let Some(amount) = set {
                *into = Some(parse(key, amount)?);
            }
        }
        if let Some(cpus) = &self.cpus {
            limits.cpu_millis = Some(parse_cpus(cpus)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<LimitsSection> {
        Ok(toml::from_str(text)?)
    }

    #[test]
    fn sizes_parse_with_units_and_override_only_what_is_set() {
        let mut limits = ResourceLimits {
            max_cpu_seconds: Some(600),
            ..Default::default()
        };
        section("memory_bytes = \"2GiB\"\ntmpfs_bytes = 1048576\nprocesses = 64\nrepo_growth_bytes = \"512M\"")
            .unwrap()
            .apply(&mut limits)
            .unwrap();
        assert_eq!(limits.session_memory_bytes, Some(2 << 30));
        assert_eq!(limits.tmpfs_bytes, Some(1 << 20));
        assert_eq!(limits.max_processes, Some(64));
        assert_eq!(limits.repo_growth_bytes, Some(512 << 20));
        assert_eq!(limits.max_cpu_seconds, Some(600));
    }

    #[test]
    fn cpus_parse_to_thousandths() {
        for (text, millis) in [
            ("cpus = 2", 2000),
            ("cpus = 1.5", 1500),
            ("cpus = \"0.25\"", 250),
            ("cpus = \".5\"", 500),
            ("cpus = 0.001", 1),
        ] {
            let mut limits = ResourceLimits::default();
            section(text).unwrap().apply(&mut limits).unwrap();
            assert_eq!(limits.cpu_millis, Some(millis), "{text}");
        }
        for bad in [
            "cpus = 0",
            "cpus = 0.0001",
            "cpus = \"-1\"",
            "cpus = \"two\"",
            "cpus = \"1.2.3\"",
            "cpus = \".\"",
            "cpus = \"99999999999999999999\"",
        ] {
            let err = section(bad)
                .and_then(|s| s.apply(&mut ResourceLimits::default()))
                .unwrap_err();
            assert!(format!("{err:#}").contains("cpus"), "{bad}: {err:#}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_key() {
        for bad in [
            "memory_bytes = \"lots\"",
            "memory_bytes = \"4XB\"",
            "tmpfs_bytes = 0",
            "processes = \"99999999999999999999\"",
        ] {
            let err = section(bad)
                .and_then(|s| s.apply(&mut ResourceLimits::default()))
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("sandbox.limits")
                    || format!("{err:#}").contains("invalid"),
                "{bad}: {err:#}"
            );
        }
        assert!(
            section("memroy_bytes = 1").is_err(),
            "a misspelt key is an error"
        );
    }
}
