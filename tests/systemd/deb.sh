#!/bin/bash
# tests/systemd/deb.sh: `make deb`.  Copies the tree as git sees it (tracked and
# untracked files, working-tree changes included, nothing ignored: no build/)
# into $DEB_OUT/src/netpolld-VERSION, runs `dpkg-buildpackage -us -uc -b` there,
# moves the packages to $DEB_OUT, and runs lintian on them: an error fails.
# As root, installs what the build needs (debhelper, lintian, the Build-Depends
# of debian/control) as `make deps` does; otherwise names the missing packages.
set -eu
set -o pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
DEB_OUT=${DEB_OUT:-$TOP/build/deb}
cd "$TOP"

command -v git >/dev/null && git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
        { echo "deb: needs a git checkout (it packages the files git knows)" >&2; exit 1; }

version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
upstream=${version%-*}
src=$DEB_OUT/src/netpolld-$upstream
rm -rf "$DEB_OUT"
mkdir -p "$src"

# The clean copy: what a clone of HEAD plus the working tree's changes holds.
git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
        tar -cf - --null -T - | tar -xf - -C "$src"
echo "deb: $(find "$src" -type f | wc -l) files of $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ' + working-tree changes') in ${src#"$TOP"/}"

# Build dependencies.
tools="dpkg-dev debhelper lintian fakeroot"
missing=$(for p in $tools; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
if [ -n "$missing" ] || ! (cd "$src" && dpkg-checkbuilddeps) >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
                echo "deb: installing the build dependencies:$(echo " $missing" | tr '\n' ' ')+ debian/control's Build-Depends"
                export DEBIAN_FRONTEND=noninteractive
                { apt-get install -y -qq $tools >/dev/null 2>&1 ||
                        { apt-get update -qq && apt-get install -y -qq $tools >/dev/null; }; } &&
                        apt-get build-dep -y -qq "$src" >/dev/null ||
                        { echo "deb: installing the build dependencies failed" >&2; exit 1; }
        else
                echo "deb: missing build dependencies; run as root:" >&2
                echo "    apt-get install -y $tools && apt-get build-dep -y $src" >&2
                (cd "$src" && dpkg-checkbuilddeps) >&2 || true
                exit 1
        fi
fi

t0=$(date +%s)
echo "deb: dpkg-buildpackage -us -uc -b (log: ${DEB_OUT#"$TOP"/}/build.log)"
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$DEB_OUT/build.log" 2>&1; then
        tail -n 30 "$DEB_OUT/build.log" >&2
        echo "deb: dpkg-buildpackage failed; see $DEB_OUT/build.log" >&2
        exit 1
fi
mv "$DEB_OUT"/src/*.deb "$DEB_OUT"/src/*.changes "$DEB_OUT"/src/*.buildinfo "$DEB_OUT"/
mv "$DEB_OUT"/src/*.ddeb "$DEB_OUT"/ 2>/dev/null || true
echo "deb: built in $(($(date +%s) - t0)) s:"
(cd "$DEB_OUT" && for d in *.deb; do printf '    %-44s %s\n' "$d" "$(du -h "$d" | cut -f1)"; done)

# lintian on the .changes: every package and the .buildinfo.
changes=$(ls "$DEB_OUT"/*.changes)
echo "deb: lintian --fail-on error (all tags: ${DEB_OUT#"$TOP"/}/lintian.txt)"
set +e
lintian --fail-on error --display-info --pedantic --tag-display-limit 0 "$changes" >"$DEB_OUT/lintian.txt" 2>&1
rc=$?
set -e
for s in E W I P; do
        n=$(grep -c "^$s: " "$DEB_OUT/lintian.txt" || true)
        printf '    %s: %s\n' "$(case $s in E) echo errors ;; W) echo warnings ;; I) echo info ;; P) echo pedantic ;; esac)" "$n"
done
grep -E '^(E|W): ' "$DEB_OUT/lintian.txt" | sed 's/^/    /' || true
if [ $rc != 0 ]; then
        echo "deb: lintian failed (exit status $rc)" >&2
        exit 1
fi
echo "deb: ok"
