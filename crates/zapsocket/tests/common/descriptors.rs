//! The process out of file descriptors, for the tests of docs/RELIABILITY.md A5 (each in a
//! test binary of its own: they take every descriptor of the process for a while).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

/// CPU time used by this process so far, in clock ticks (utime + stime of
/// /proc/self/stat, opened beforehand: no descriptor is needed to read it again).
pub fn cpu_ticks(proc_stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let n = proc_stat.read_at(&mut buf, 0).unwrap();
    let stat = String::from_utf8_lossy(&buf[..n]).into_owned();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Takes every descriptor of the process but one (kept for a client's socket); dropping
/// what it returns gives them back.
pub fn take_every_descriptor() -> Vec<std::fs::File> {
    // Lower this process's soft limit, so that taking every descriptor is quick wherever
    // the limit is high (best effort: `prlimit` from util-linux; without it the current
    // limit is used).
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile=1024:"]).status();
    let mut hoard = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(e) if e.raw_os_error() == Some(24) => break, // EMFILE
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(hoard.len() < 1 << 20, "no descriptor limit to reach");
    }
    hoard.pop();
    hoard
}
