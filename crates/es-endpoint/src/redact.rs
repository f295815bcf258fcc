//! Keeping credentials out of logs, errors, `Debug` output and state metadata.

/// `scheme://user:pass@host/path` -> `scheme://user:***@host/path`; a URL
/// without a password is returned unchanged. For messages and `Debug`.
pub fn redact_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((head, userinfo, rest)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{head}{user}:***@{rest}"),
            // `redis://token@host`: a lone userinfo may itself be a secret.
            None if head.starts_with("redis") => format!("{head}***@{rest}"),
            None => format!("{head}{userinfo}@{rest}"),
        },
        None => url.to_owned(),
    }
}

/// `scheme://user:pass@host/path` -> `scheme://host/path`. For anything persisted
/// (the state document's `metadata.url`).
pub fn strip_userinfo(url: &str) -> String {
    match split_userinfo(url) {
        Some((head, _, rest)) => format!("{head}{rest}"),
        None => url.to_owned(),
    }
}

/// Splits `scheme://userinfo@rest` into (`scheme://`, `userinfo`, `rest`).
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let (head, after) = url.split_at(scheme_end);
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    // The last '@' of the authority ends the userinfo (passwords may contain '@').
    let at = after[..authority_end].rfind('@')?;
    Some((head, &after[..at], &after[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_keeps_the_rest() {
        assert_eq!(
            redact_url("https://elastic:s3cr3t@es.example:9200/x?y=1"),
            "https://elastic:***@es.example:9200/x?y=1"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("rediss://tok@h:6380"), "rediss://***@h:6380");
        assert_eq!(redact_url("http://localhost:9200"), "http://localhost:9200");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("http://u:p@ss@h/"), "http://u:***@h/");
    }

    #[test]
    fn strips_userinfo() {
        assert_eq!(strip_userinfo("http://u:p@h:9200"), "http://h:9200");
        assert_eq!(strip_userinfo("http://h:9200/a@b"), "http://h:9200/a@b");
    }
}
