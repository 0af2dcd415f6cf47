//! The environment of an upstream started by command. Ours holds credentials meant for
//! other places (an upstream's `headers`, `CODEMODE_AUTH_TOKEN`, the egress rules'
//! secrets), and a tool can print its own environment, so a started server gets only what
//! the official SDKs pass by default, the names its config lets through and its own `env`.

use std::collections::BTreeMap;

use crate::config::nesting::{self, NESTING_VAR};

/// The variables every started server gets from ours, as the official MCP SDKs choose
/// them (the locale's `LC_*` and `TMPDIR` besides; proxies are not among them, since their
/// URLs may hold credentials: `inheritEnv` passes them).
#[cfg(not(windows))]
const MINIMAL: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LANGUAGE", "TMPDIR",
];
#[cfg(windows)]
const MINIMAL: &[&str] = &[
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
    "PROGRAMFILES",
];

/// The whole environment for a server started by command: from `ours`, the minimal set and
/// the names in `inherit`; then the entry's own `env`; then its nesting level.
pub(super) fn for_child(
    ours: impl IntoIterator<Item = (String, String)>,
    inherit: &[String],
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut environment: BTreeMap<String, String> = ours
        .into_iter()
        .filter(|(name, value)| {
            let passed = MINIMAL.contains(&name.as_str())
                || name.starts_with("LC_")
                || inherit.iter().any(|n| n == name);
            // Values that start with "()" are exported shell functions, which the SDKs
            // skip as a known attack vector.
            passed && !name.starts_with("CODEMODE_") && !value.starts_with("()")
        })
        .collect();
    environment.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    environment.insert(
        NESTING_VAR.to_string(),
        (nesting::level().saturating_add(1)).to_string(),
    );
    environment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Vec<(String, String)> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("LC_TIME", "nb_NO.UTF-8"),
            ("GH_TOKEN", "secret-1"),
            ("CODEMODE_AUTH_TOKEN", "secret-2"),
            ("AWS_PROFILE", "work"),
            ("SHELL", "() { evil; }"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn only_the_minimal_set_the_passed_names_and_its_own_env_reach_a_server() {
        let own = [("API_KEY".to_string(), "its-own".to_string())].into();
        let env = for_child(ours(), &["AWS_PROFILE".to_string()], &own);
        assert_eq!(env["PATH"], "/usr/bin");
        assert_eq!(env["LC_TIME"], "nb_NO.UTF-8");
        assert_eq!(env["AWS_PROFILE"], "work");
        assert_eq!(env["API_KEY"], "its-own");
        assert_eq!(env[NESTING_VAR], (nesting::level() + 1).to_string());
        for withheld in ["GH_TOKEN", "CODEMODE_AUTH_TOKEN", "SHELL"] {
            assert!(!env.contains_key(withheld), "{withheld}: {env:?}");
        }
        let env = for_child(ours(), &["CODEMODE_AUTH_TOKEN".to_string()], &own);
        assert!(!env.contains_key("CODEMODE_AUTH_TOKEN"), "{env:?}");
    }
}
