//! What the agent process does to itself so that the processes it serves
//! (the sandboxed COMMAND usually runs as the same user) cannot take its
//! secrets.
//!
//! [`make_undumpable`] sets `PR_SET_DUMPABLE` to 0: the kernel then lets no
//! process of the same user (without `CAP_SYS_PTRACE`) read the agent's
//! `/proc/PID/environ` or `/proc/PID/mem`, attach to it with ptrace or make
//! it dump core; its `/proc/PID` files become root's. It does not hide
//! `/proc/PID/cmdline` (which every user can read: hence `--token-file`
//! rather than `--token`), does not stop root, and does not protect files
//! the agent reads (the token file must be private, which the agent checks).

/// Makes this process non-dumpable (see the module docs). The flag is reset
/// in the commands the agent starts when they exec, which is what they need
/// to be debuggable themselves.
pub fn make_undumpable() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(std::io::Error::from)
}

/// Whether this process is dumpable now.
pub fn is_dumpable() -> std::io::Result<bool> {
    let behavior = rustix::process::dumpable_behavior().map_err(std::io::Error::from)?;
    Ok(behavior != rustix::process::DumpableBehavior::NotDumpable)
}

/// Overwrites every copy of `secret` in this process's initial environment
/// and argument strings (what `/proc/PID/environ` and `/proc/PID/cmdline`
/// show) with NUL bytes, through `/proc/self/mem`: after reading the token
/// from `CODER_AGENT_TOKEN` or `--token`, the agent keeps no copy of it
/// there. Returns how many copies it wiped.
///
/// Call it before any other thread starts: the environment strings are
/// what the C library's `getenv` reads (the variable then reads as empty,
/// which is also what the commands the agent starts must not see anyway).
/// Root can still read the process's memory; the token is still in the
/// agent's own heap, where it is needed.
pub fn scrub_initial_strings(secret: &str) -> std::io::Result<usize> {
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    if secret.is_empty() {
        return Ok(0);
    }
    let mut stat = String::new();
    std::fs::File::open("/proc/self/stat")?.read_to_string(&mut stat)?;
    let [arg_start, arg_end, env_start, env_end] = string_areas(&stat)?;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    let mut wiped = 0;
    for (start, end) in [(arg_start, arg_end), (env_start, env_end)] {
        let Some(len) = end.checked_sub(start).and_then(|l| usize::try_from(l).ok()) else {
            continue;
        };
        let mut area = vec![0u8; len];
        mem.read_exact_at(&mut area, start)?;
        let needle = secret.as_bytes();
        let mut at = 0;
        while let Some(found) = area[at..].windows(needle.len()).position(|w| w == needle) {
            let offset = at + found;
            mem.write_all_at(&vec![0u8; needle.len()], start + offset as u64)?;
            area[offset..offset + needle.len()].fill(0);
            wiped += 1;
            at = offset + needle.len();
        }
    }
    Ok(wiped)
}

/// `arg_start`, `arg_end`, `env_start` and `env_end` from `/proc/self/stat`
/// (fields 48 to 51; the command name, field 2, may hold spaces and
/// parentheses, so fields are counted from its closing parenthesis).
fn string_areas(stat: &str) -> std::io::Result<[u64; 4]> {
    let bad = || std::io::Error::other("unexpected /proc/self/stat format");
    let after_comm = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // The first field after the name is field 3.
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(bad)
    };
    Ok([field(48)?, field(49)?, field(50)?, field(51)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_areas_are_found_after_the_command_name() {
        let mut stat = String::from("42 (a) b (c)) S");
        for n in 4..=52 {
            stat.push_str(&format!(" {n}"));
        }
        assert_eq!(string_areas(&stat).unwrap(), [48, 49, 50, 51]);
        assert!(string_areas("42 (a) S 1 2").is_err());
    }

    #[test]
    fn dumpability_can_be_read() {
        // Whatever the test runner set; the agent binary's tests check the
        // effect of make_undumpable on /proc.
        is_dumpable().unwrap();
    }
}
