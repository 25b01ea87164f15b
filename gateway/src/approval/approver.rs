//! Who may approve over the admin socket: the caller's uid (from `SO_PEERCRED`, which the
//! caller cannot forge) must name a user in `[approvals] approver_users`, or a member of one
//! of `approver_groups`. Names are looked up when the call arrives, so an account created
//! after the gateway started counts.

use std::ffi::{CStr, CString};

use super::hold::Approver;
use crate::config::ApprovalSettings;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnApprover {
    #[error("uid {0} has no user name on this host")]
    UnknownUid(u32),
    #[error(
        "{0} is not an approver: add the user to [approvals] approver_users, or to a group in \
         approver_groups"
    )]
    NotListed(String),
}

/// The approver a local caller is, or why it is not one.
pub fn local_approver(uid: u32, settings: &ApprovalSettings) -> Result<Approver, NotAnApprover> {
    let (name, primary_gid) = user(uid).ok_or(NotAnApprover::UnknownUid(uid))?;
    let listed = settings.approver_users.contains(&name)
        || (!settings.approver_groups.is_empty()
            && groups(&name, primary_gid)
                .iter()
                .any(|g| settings.approver_groups.contains(g)));
    match listed {
        true => Ok(Approver {
            name,
            uid: Some(uid),
            token_subject: None,
        }),
        false => Err(NotAnApprover::NotListed(name)),
    }
}

/// The user's name and primary group.
fn user(uid: u32) -> Option<(String, u32)> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; all-zero is a valid value.
    #[expect(unsafe_code, reason = "zero-initialising a C struct")]
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to our own live memory, with the buffer's true length.
    #[expect(unsafe_code, reason = "getpwuid_r(3) has no std wrapper")]
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a C string inside `buffer`.
    #[expect(unsafe_code, reason = "reading the name getpwuid_r wrote")]
    let name = unsafe { CStr::from_ptr(entry.pw_name) };
    Some((name.to_string_lossy().into_owned(), entry.pw_gid))
}

/// The names of every group the user belongs to, the primary one included.
fn groups(user: &str, primary_gid: u32) -> Vec<String> {
    let Ok(name) = CString::new(user) else {
        return Vec::new();
    };
    let mut gids = vec![0 as libc::gid_t; 64];
    loop {
        let mut count = gids.len() as libc::c_int;
        // SAFETY: `gids` holds `count` entries; the name is a valid C string.
        #[expect(unsafe_code, reason = "getgrouplist(3) has no std wrapper")]
        let rc = unsafe {
            libc::getgrouplist(name.as_ptr(), primary_gid, gids.as_mut_ptr(), &mut count)
        };
        if rc >= 0 {
            gids.truncate(count.max(0) as usize);
            break;
        }
        // Too small: `count` says how many there are.
        gids.resize((count.max(0) as usize).max(gids.len() * 2), 0);
    }
    gids.into_iter().filter_map(group_name).collect()
}

fn group_name(gid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: group is plain old data; all-zero is a valid value.
    #[expect(unsafe_code, reason = "zero-initialising a C struct")]
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is to our own live memory, with the buffer's true length.
    #[expect(unsafe_code, reason = "getgrgid_r(3) has no std wrapper")]
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.gr_name.is_null() {
        return None;
    }
    // SAFETY: getgrgid_r succeeded, so gr_name points to a C string inside `buffer`.
    #[expect(unsafe_code, reason = "reading the name getgrgid_r wrote")]
    let name = unsafe { CStr::from_ptr(entry.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(users: &[&str], groups: &[&str]) -> ApprovalSettings {
        ApprovalSettings {
            approver_users: users.iter().map(|s| s.to_string()).collect(),
            approver_groups: groups.iter().map(|s| s.to_string()).collect(),
            required: 1,
            timeout: Duration::from_secs(600),
            webhook: None,
            http: None,
        }
    }

    // uid 0 is `root`, in group `root`, on every Linux host.
    #[test]
    fn a_listed_user_or_a_member_of_a_listed_group_approves() {
        let by_name = local_approver(0, &settings(&["root"], &[])).expect("listed user");
        assert_eq!((by_name.name.as_str(), by_name.uid), ("root", Some(0)));
        let by_group = local_approver(0, &settings(&["alice"], &["root"])).expect("group");
        assert_eq!(by_group.name, "root");
    }

    #[test]
    fn anyone_else_is_refused_by_name() {
        assert_eq!(
            local_approver(0, &settings(&["alice"], &["dba"])),
            Err(NotAnApprover::NotListed("root".to_owned()))
        );
        assert_eq!(
            local_approver(0, &settings(&[], &[])),
            Err(NotAnApprover::NotListed("root".to_owned()))
        );
        // A uid no account has (the kernel's overflow uid is never a real user).
        assert_eq!(
            local_approver(4_000_000_000, &settings(&["root"], &["root"])),
            Err(NotAnApprover::UnknownUid(4_000_000_000))
        );
    }
}
