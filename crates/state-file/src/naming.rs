//! Which file holds which state id, and the content hash used in revisions.

/// The longest file name most file systems accept (Linux `NAME_MAX`), in bytes.
pub(crate) const MAX_FILE_NAME_BYTES: usize = 255;

/// The extension of every state file.
pub(crate) const EXTENSION: &str = ".json";

/// Separates the kept prefix of a long id from its hash. A valid [`StateId`]
/// never contains `..`, so a shortened name can never be another id's
/// ordinary `<id>.json`.
///
/// [`StateId`]: state_core::StateId
const SHORTENED_MARK: &str = "..";

/// Hex digits of the hash in a shortened name.
const HASH_HEX_DIGITS: usize = 16;

/// The file name of a (validated) state id.
///
/// `<id>.json` when that fits in [`MAX_FILE_NAME_BYTES`]; longer ids (251 to 255
/// bytes) become `<first bytes of id>..<fnv1a64(id) as 16 hex digits>.json`,
/// cut at a character boundary. The document inside still carries the full id,
/// and loads check it, so even a hash collision can not mix two states up.
pub(crate) fn file_name(id: &str) -> String {
    if id.len() + EXTENSION.len() <= MAX_FILE_NAME_BYTES {
        return format!("{id}{EXTENSION}");
    }
    let mut keep = MAX_FILE_NAME_BYTES - EXTENSION.len() - SHORTENED_MARK.len() - HASH_HEX_DIGITS;
    while !id.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(
        "{}{SHORTENED_MARK}{:0width$x}{EXTENSION}",
        &id[..keep],
        fnv1a64(id.as_bytes()),
        width = HASH_HEX_DIGITS
    )
}

/// Whether a directory entry may be a state file: `*.json`, not hidden.
/// Temp files and the lock file start with `.`, so they never qualify.
pub(crate) fn is_state_file_name(name: &str) -> bool {
    !name.starts_with('.') && name.len() > EXTENSION.len() && name.ends_with(EXTENSION)
}

/// Whether a directory entry is a temp file left by a writer (see `disk::write_atomic`).
pub(crate) fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Suffix of temp files.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`),
/// tiny, and spreads ids well. Names the files of long ids, so it must never
/// change. Not collision resistant against an adversary, which is why loads
/// check the id inside the document.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The content hash in revisions: FNV-1a's xor-multiply step, plus an
/// xor-shift to fold high bits down, over 64-bit little-endian words (the tail
/// byte by byte): eight times fewer multiplies than [`fnv1a64`], which
/// matters on every load. Each step is a bijection of
/// the running hash, so changing any one word always changes the result.
/// Stable across builds and platforms; not collision resistant (see `disk::revision`).
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut hash = FNV_OFFSET ^ bytes.len() as u64;
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(le)).wrapping_mul(FNV_PRIME);
        hash ^= hash >> 29;
    }
    for &b in words.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_core::{MAX_STATE_ID_BYTES, StateId};

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn content_hash_sees_every_single_byte_change() {
        let base: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let h = content_hash(&base);
        for i in 0..base.len() {
            let mut changed = base.clone();
            changed[i] ^= 0x80;
            assert_ne!(content_hash(&changed), h, "byte {i}");
        }
        assert_ne!(content_hash(&base[..299]), h, "truncation");
        assert_ne!(content_hash(b""), content_hash(b"\0"));
    }

    #[test]
    fn ordinary_ids_keep_their_name() {
        for id in [
            "c1",
            "logs-2024.01",
            "日本語-状態",
            "mixed Case With Spaces",
        ] {
            assert_eq!(file_name(id), format!("{id}.json"));
        }
        let longest_plain = "x".repeat(MAX_FILE_NAME_BYTES - EXTENSION.len());
        assert_eq!(file_name(&longest_plain), format!("{longest_plain}.json"));
    }

    #[test]
    fn long_ids_are_shortened_distinctly_and_fit() {
        let ids = [
            "x".repeat(MAX_STATE_ID_BYTES),
            "x".repeat(MAX_STATE_ID_BYTES - 1) + "y",
            "x".repeat(251),
            "é".repeat(127) + "x",
            "界".repeat(85),
        ];
        let mut names = Vec::new();
        for id in &ids {
            assert!(StateId::new(id.as_str()).is_ok(), "{id}");
            let name = file_name(id);
            assert!(
                name.len() <= MAX_FILE_NAME_BYTES,
                "{} bytes: {name}",
                name.len()
            );
            assert!(name.contains(SHORTENED_MARK), "{name}");
            assert!(is_state_file_name(&name));
            // No valid id maps to this name as an ordinary `<id>.json`.
            let stem = &name[..name.len() - EXTENSION.len()];
            assert!(StateId::new(stem).is_err(), "{stem}");
            names.push(name);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ids.len(), "two long ids share a file name");
    }

    #[test]
    fn hidden_and_temp_names_are_never_state_files() {
        assert!(!is_state_file_name(".lock"));
        assert!(!is_state_file_name(".state-file-123-0.tmp"));
        assert!(!is_state_file_name(".hidden.json"));
        assert!(!is_state_file_name(".json"));
        assert!(!is_state_file_name("notes.txt"));
        assert!(is_temp_file_name(".state-file-123-0.tmp"));
        assert!(!is_temp_file_name("c1.json"));
        assert!(!is_temp_file_name("c1.tmp"));
    }
}
