#!/bin/sh
# install.sh — the steps of `make install` and `make deb` (see the Makefile
# and docs/install.md), one sub-command each:
#
#   install.sh tree SRC... DEST     copy files and directories into DEST,
#                                   replacing earlier copies (0644 / 0755)
#   install.sh sysconf SRC OUT SPOOLDIR USER
#                                   OUT: the configuration for SYSCONFDIR, made
#                                   from the default config/ (listen on port
#                                   25, the compiled-in spool, user: USER)
#   install.sh conf SRC DEST        install the configuration SRC into DEST
#                                   without replacing a file the admin changed:
#                                   the new default goes beside it as FILE.dist
#   install.sh spool DIR USER       the spool: 0750, or for USER (not when
#                                   staging) root's with USER's group, 1770
#   install.sh units SRC DEST SBINDIR SYSCONFDIR SPOOLDIR DOCDIR
#                                   the systemd units with the install paths
#   install.sh changelog VERSION    a debian/changelog entry for VERSION
set -e

die() { echo "install.sh: $*" >&2; exit 1; }

# Copy the directory $1 to $2 (replaced), directories 0755, files 0644.
copy_dir() {
    rm -rf "${2:?}"
    cp -R "$1" "$2"
    find "$2" -type d -exec chmod 0755 {} +
    find "$2" -type f -exec chmod 0644 {} +
}

tree() {
    [ $# -ge 2 ] || die "usage: tree SRC... DEST"
    eval "dest=\${$#}"
    install -d "$dest"
    while [ $# -gt 1 ]; do
        if [ -d "$1" ]; then
            copy_dir "$1" "$dest/$(basename "$1")"
        else
            install -m 0644 "$1" "$dest/$(basename "$1")"
        fi
        shift
    done
}

# Replace the line matching $2 in file $1 with the text $3, and fail when
# no line matched (the default file changed shape: update this script).
edit() {
    grep -q -- "$2" "$1" || die "$1: no line matches '$2'"
    awk -v re="$2" -v text="$3" '$0 ~ re { print text; next } { print }' \
        "$1" > "$1.new"
    mv "$1.new" "$1"
}

sysconf() {
    [ $# -eq 4 ] || die "usage: sysconf SRC OUT SPOOLDIR USER"
    src=$1 out=$2 spool=$3 user=$4
    copy_dir "$src" "$out"
    chmod 0640 "$out/auth_users"
    y=$out/smtp.yaml
    edit "$y" '^  - 127\.0\.0\.1:2525 ' \
"  - 0.0.0.0:25                # an MX: all IPv4 addresses, and IPv6 below
  - \"[::]:25\""
    edit "$y" '^spool_dir: ' \
"# spool_dir: $spool   # the default, compiled in (make SPOOLDIR=)"
    [ -z "$user" ] || cat >> "$y" <<EOF

# kasi starts as root to bind port 25, then runs its workers as this user
# (the spool directory is root's with this user's group, mode 1770:
# docs/install.md).
user: $user
EOF
}

conf() {
    [ $# -eq 2 ] || die "usage: conf SRC DEST"
    src=$1 dest=$2
    install -d "$dest"
    (cd "$src" && find . -type f) | sort | while read -r rel; do
        rel=${rel#./}
        mode=$(stat -c %a "$src/$rel")
        install -d "$(dirname "$dest/$rel")"
        if [ ! -e "$dest/$rel" ]; then
            install -m "$mode" "$src/$rel" "$dest/$rel"
        elif ! cmp -s "$src/$rel" "$dest/$rel"; then
            install -m "$mode" "$src/$rel" "$dest/$rel.dist"
            echo "kept $dest/$rel (changed); the new default is $rel.dist"
        fi
    done
}

# The spool, made when missing. For USER, when it exists and we are root:
# root's, with USER's group, mode 1770, the layout kasi's supervisor needs
# under the systemd unit (docs/install.md, "The spool"); a spool still as
# an earlier install left it (root:root 0750) is changed to that too. A
# spool the admin changed is left alone.
spool() {
    [ $# -eq 2 ] || die "usage: spool DIR USER"
    dir=$1 user=$2
    [ -d "$dir" ] || install -d -m 0750 "$dir"
    [ -n "$user" ] || return 0
    [ "$(stat -c '%u:%g %a' "$dir")" = "0:0 750" ] || return 0
    group=$(id -gn "$user" 2>/dev/null) || group=
    if [ -n "$group" ] && [ "$(id -u)" = 0 ]; then
        chown "root:$group" "$dir"
        chmod 1770 "$dir"
    else
        echo "$dir: for user $user, make it root:<its group>, mode 1770 (docs/install.md)"
    fi
}

units() {
    [ $# -eq 6 ] || die "usage: units SRC DEST SBINDIR SYSCONFDIR SPOOLDIR DOCDIR"
    install -d "$2"
    for u in kasi.service kasi.socket; do
        sed -e "s|/usr/sbin/kasi|$3/kasi|g" -e "s|/etc/kasi|$4|g" \
            -e "s|/var/spool/kasi|$5|g" -e "s|/usr/share/doc/kasi|$6|g" \
            "$1/$u" > "$2/$u"
        chmod 0644 "$2/$u"
    done
}

changelog() {
    [ $# -eq 1 ] || die "usage: changelog VERSION"
    when=$(git log -1 --format=%cD 2>/dev/null || date -R)
    cat <<EOF
kasi ($1) unstable; urgency=medium

  * Built from the source tree; the version is src/core/version.h's.

 -- kasi maintainers <kasi@example.org>  $when
EOF
}

cmd=$1
[ -n "$cmd" ] || die "usage: install.sh tree|sysconf|conf|spool|units|changelog ARGS"
shift
case $cmd in
    tree|sysconf|conf|spool|units|changelog) "$cmd" "$@" ;;
    *) die "unknown step '$cmd'" ;;
esac
