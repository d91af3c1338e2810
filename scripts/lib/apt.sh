# Sourced by fetch-kernel.sh and vmlinux.sh: a private apt setup (own sources list,
# lists and cache under $GTHULHU_CACHE) to reach suites the host does not use, like
# trixie-backports or sid, without touching the system's apt configuration.

GTHULHU_CACHE=${GTHULHU_CACHE:-$HOME/.cache/gthulhu}

# The Debian mirror this machine already uses, read from its own sources, so nothing
# here names a host.
debian_uri() {
    local uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        # deb822: first stanza whose suites are not the security archive.
        uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
            { u = ""; s = ""
              for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u) }
                if ($i ~ /^Suites:/) { s = $i; sub(/^Suites:[ \t]*/, "", s) }
              }
              if (u != "" && s !~ /security/) { split(u, a, /[ \t]+/); print a[1]; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { echo "no Debian URI found in /etc/apt/sources.list.d/debian.sources" >&2; return 1; }
    echo "$uri"
}

# apt_setup NAME SUITE: prepare $GTHULHU_CACHE/apt/NAME for SUITE and set APT_OPTS.
# Lists are refreshed at most once a day (GTHULHU_APT_MAX_AGE seconds), so cached
# reruns need no network. Returns 1 if a needed refresh failed (caller decides).
apt_setup() {
    local name=$1 suite=$2 dir uri stamp age
    dir=$GTHULHU_CACHE/apt/$name
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    uri=$(debian_uri) || return 1
    echo "deb $uri $suite main" >"$dir/sources.list.new"
    if cmp -s "$dir/sources.list.new" "$dir/sources.list"; then
        rm -f "$dir/sources.list.new"
    else
        mv "$dir/sources.list.new" "$dir/sources.list"
        rm -f "$dir/updated"
    fi
    APT_OPTS=(-q -oDir::Etc::SourceList="$dir/sources.list" -oDir::Etc::SourceParts=/dev/null
        -oDir::State::Lists="$dir/lists" -oDir::Cache="$dir/cache"
        -oAcquire::Languages=none -oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
        -oAPT::Sandbox::User=root)
    stamp=$dir/updated
    age=999999999
    [ -e "$stamp" ] && age=$(($(date +%s) - $(stat -c %Y "$stamp")))
    if [ "$age" -gt "${GTHULHU_APT_MAX_AGE:-86400}" ]; then
        echo "apt: refreshing package lists for $suite" >&2
        # --error-on=any: a failed download is otherwise only a warning (exit 0).
        if apt-get "${APT_OPTS[@]}" --error-on=any update >"$dir/update.log" 2>&1; then
            touch "$stamp"
        else
            echo "apt: update for $suite failed (see $dir/update.log)" >&2
            return 1
        fi
    fi
}

# apt_candidate PKG: version apt would pick for PKG in the private setup.
apt_candidate() {
    apt-cache "${APT_OPTS[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }'
}
