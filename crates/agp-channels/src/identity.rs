//! Who a local account is, as approvals journal it: `tty:<user>`. The terminal channel (the
//! account agp runs as) and the daemon's web console (the account of the connecting process)
//! both name people through this one function, so that a rule's `approvers` list names a person
//! once for both, and one person is never counted twice toward a quorum.

use agp_contracts::Approver;

/// The approver for local account `uid`, decided through `via`: the account name from the
/// password database; `$USER` only when `uid` is agp's own account and it has no local entry;
/// `uid<N>` when neither gives a name that is safe to show.
pub fn local_approver(uid: u32, via: &str) -> Approver {
    let own = rustix::process::getuid().as_raw();
    let user = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| user_of(&passwd, uid))
        .or_else(|| (uid == own).then(|| std::env::var("USER").ok()).flatten())
        .filter(|u| !u.is_empty() && !u.chars().any(crate::sanitize::is_unsafe))
        .unwrap_or_else(|| format!("uid{uid}"));
    Approver {
        id: format!("tty:{user}"),
        name: user,
        via: via.to_owned(),
    }
}

/// The account name for `uid` in passwd(5) text.
fn user_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_account_name_for_a_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_of(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_of(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_of(passwd, 7), None);
    }

    #[test]
    fn the_terminal_and_the_console_name_one_account_alike() {
        let uid = rustix::process::getuid().as_raw();
        let at_terminal = local_approver(uid, "terminal");
        let on_the_web = local_approver(uid, "web");
        assert_eq!(at_terminal.id, on_the_web.id);
        assert_eq!(at_terminal.name, on_the_web.name);
        assert!(at_terminal.id.starts_with("tty:"));
    }
}
