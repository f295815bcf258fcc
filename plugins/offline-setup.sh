#!/bin/sh
# Prepares an offline build of the plugins from an extracted snapshot of
# https://github.com/apache/iggy at the supported revision (docs/plugins.md).
#
#   plugins/offline-setup.sh /path/to/iggy-snapshot [work-dir]     # work-dir: /tmp/iggy-offline
#   cd plugins && cargo --config /tmp/iggy-offline/config.toml build --release --offline
#
# Cargo cannot build a [patch] of a Git dependency without fetching it first, so
# the SDK's Git source is *replaced* by a directory of crates packaged from the
# snapshot (nothing of it is copied into this repository). A replaced Git source
# needs a Cargo.lock naming it: one is resolved from a copy of the workspace with
# path dependencies, then written to plugins/Cargo.lock (ignored by Git).
# Set RUSTUP_TOOLCHAIN (e.g. 1.95.0) if the snapshot's rust-toolchain.toml names
# a toolchain you do not have.
set -eu

REV=cc269ef70ef2d78af5102f5560b5b03c9dd81401
GIT=https://github.com/apache/iggy
CRATES="iggy_connector_sdk iggy iggy_common iggy_binary_protocol"

[ $# -ge 1 ] || { echo "usage: $0 /path/to/iggy-snapshot [work-dir]" >&2; exit 2; }
SNAPSHOT=$(cd "$1" && pwd)
WORK=${2:-/tmp/iggy-offline}
PLUGINS=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$PLUGINS")
[ -f "$SNAPSHOT/core/connectors/sdk/Cargo.toml" ] || { echo "$SNAPSHOT has no core/connectors/sdk" >&2; exit 2; }
mkdir -p "$WORK"

# 1. Package the SDK and the Iggy crates it needs. The SDK's manifest names
#    core/README.md as its readme, which a snapshot may lack: lend it one.
lent_readme=
if [ ! -e "$SNAPSHOT/core/README.md" ]; then
  cp "$SNAPSHOT/README.md" "$SNAPSHOT/core/README.md"
  lent_readme=yes
fi
set --
for c in $CRATES; do set -- "$@" -p "$c"; done
(cd "$SNAPSHOT" && CARGO_TARGET_DIR="$WORK/package-target" \
  cargo package --offline --no-verify --allow-dirty "$@")
if [ -n "$lent_readme" ]; then rm "$SNAPSHOT/core/README.md"; fi

# 2. Unpack them as a directory source. Packaging turned their links to each
#    other into crates.io dependencies: point those back at the Git source, which
#    step 3 replaces with this same directory.
rm -rf "$WORK/vendor"
mkdir -p "$WORK/vendor"
for crate in "$WORK"/package-target/package/*.crate; do tar xzf "$crate" -C "$WORK/vendor"; done
for dir in "$WORK"/vendor/*/; do
  echo '{"files":{},"package":null}' > "$dir.cargo-checksum.json"
  sed -i -E "s#^(\[(.*\.)?dependencies\.(iggy|iggy_common|iggy_binary_protocol)\])\$#\1\ngit = \"$GIT\"\nrev = \"$REV\"#" \
    "$dir/Cargo.toml"
done

# 3. The source replacement, passed with `cargo --config <file>` (never committed).
cat > "$WORK/config.toml" <<EOF
[source."git+$GIT?rev=$REV"]
git = "$GIT"
rev = "$REV"
replace-with = "iggy-snapshot"

[source.iggy-snapshot]
directory = "$WORK/vendor"
EOF

# 4. The lock: resolve a copy of the workspace whose SDK dependencies are paths
#    into the snapshot, then give the Iggy packages their Git source.
rm -rf "$WORK/lockgen"
mkdir -p "$WORK/lockgen"
cp "$PLUGINS/Cargo.toml" "$WORK/lockgen/"
for member in elasticsearch_source elasticsearch_sink; do
  mkdir -p "$WORK/lockgen/$member"
  cp -r "$PLUGINS/$member/Cargo.toml" "$PLUGINS/$member/src" "$WORK/lockgen/$member/"
  if [ -d "$PLUGINS/$member/tests" ]; then cp -r "$PLUGINS/$member/tests" "$WORK/lockgen/$member/"; fi
done
sed -i -e "s#path = \"../crates/#path = \"$REPO/crates/#" \
  -e "s#^iggy_connector_sdk = .*#iggy_connector_sdk = { path = \"$SNAPSHOT/core/connectors/sdk\" }#" \
  -e "s#^iggy_common = .*#iggy_common = { path = \"$SNAPSHOT/core/common\" }#" \
  "$WORK/lockgen/Cargo.toml"
(cd "$WORK/lockgen" && cargo generate-lockfile --offline)
python3 - "$WORK/lockgen/Cargo.lock" "$PLUGINS/Cargo.lock" "$GIT" "$REV" $CRATES <<'PY'
import re
import sys

lock_in, lock_out, git, rev, *crates = sys.argv[1:]
lock = open(lock_in).read()
for name in crates:
    pattern = r'(\[\[package\]\]\nname = "%s"\nversion = "[^"]+"\n)' % re.escape(name)
    source = f'source = "git+{git}?rev={rev}#{rev}"\n'
    lock, n = re.subn(pattern, lambda m: m.group(1) + source, lock)
    if n != 1:
        sys.exit(f"{name}: expected one [[package]] in the lock, found {n}")
open(lock_out, "w").write(lock)
PY

echo "ready: cd $PLUGINS && cargo --config $WORK/config.toml build --release --offline"
