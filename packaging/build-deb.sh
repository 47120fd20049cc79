#!/usr/bin/env bash
# Builds the Debian package (target/debian/scimd_*.deb) with cargo-deb: the release binary, its man
# page and shell completions (generated from the command line), the hardened systemd unit and a
# default /etc/scimd/scimd.toml. Then lists its contents and checks that each file is there.
# Usage: packaging/build-deb.sh   (needs cargo-deb: cargo install cargo-deb --locked)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p scimd
OUT=target/packaging; rm -rf $OUT; mkdir -p $OUT/completions
target/release/scimd man | gzip -9n > $OUT/scimd.1.gz
target/release/scimd completions bash > $OUT/completions/scimd.bash
target/release/scimd completions zsh > $OUT/completions/_scimd
target/release/scimd completions fish > $OUT/completions/scimd.fish
cargo deb -p scimd --no-build --strip
DEB=$(ls -t target/debian/scimd_*.deb | head -1)
dpkg-deb -c "$DEB" | tee $OUT/contents.txt
for f in ./usr/bin/scimd ./usr/share/man/man1/scimd.1.gz ./usr/share/bash-completion/completions/scimd \
         ./usr/share/zsh/vendor-completions/_scimd ./usr/share/fish/vendor_completions.d/scimd.fish \
         ./lib/systemd/system/scimd.service ./etc/scimd/scimd.toml; do
  grep -q " $f\$" $OUT/contents.txt || { echo "missing from $DEB: $f" >&2; exit 1; }
done
# Read whole first: `grep -q` leaving a pipe early would fail the pipeline (SIGPIPE, pipefail).
dpkg-deb -I "$DEB" > $OUT/info.txt
grep -q "Depends:.*adduser" $OUT/info.txt || { echo "$DEB does not depend on adduser" >&2; exit 1; }
echo "built $DEB"
