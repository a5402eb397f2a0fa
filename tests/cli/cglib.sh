# cglib.sh - a memory cgroup for one command (sourced, POSIX sh): used by
# tests/cli/cgroup.sh and bench/cgroup.sh.  Needs root and a writable
# cgroup file system: v1 (a "memory" hierarchy) or v2 (the memory controller
# enabled below this shell's cgroup).
#
#   cg_make LIMIT_BYTES   create one under this shell's cgroup, limited to
#                         LIMIT_BYTES (swap too where the file exists); sets
#                         CG (its directory) and CG_VER (1 or 2); returns 1,
#                         with the reason in CG_WHY, if it cannot
#   cg_run IOFILE CMD...  run CMD in it; its read_bytes and write_bytes
#                         (/proc/PID/io of the shell that waited for it,
#                         which the kernel adds the child's to) go to IOFILE
#   cg_peak               the cgroup's peak memory use in bytes (v1
#                         memory.max_usage_in_bytes, v2 memory.peak; empty
#                         if the kernel keeps none)
#   cg_remove             remove it (the command has ended)
#   uncache FILE...       write FILEs back and drop them from the page cache
#                         (GNU dd iflag=nocache), so that the next read comes
#                         from storage

# cg_mount TYPE: the mount point of the cgroup2 hierarchy, or (cgroup) of
# the v1 hierarchy with the memory controller (fstype and super options
# follow the "-" field of /proc/self/mountinfo)
cg_mount() {
    awk -v t="$1" '{
        for (i = 7; i <= NF; i++) if ($i == "-") break
        if ($(i + 1) != t) next
        if (t == "cgroup" && ("," $(i + 3) ",") !~ /,memory,/) next
        print $5; exit
    }' /proc/self/mountinfo
}

cg_make() {
    CG=
    CG_VER=
    CG_WHY=
    if [ "$(id -u)" != 0 ]; then
        CG_WHY="not root"
        return 1
    fi
    # v1: the hierarchy with the memory controller
    cg_mnt=$(cg_mount cgroup)
    cg_own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
    if [ -n "$cg_mnt" ] && [ -n "$cg_own" ]; then
        CG="$cg_mnt${cg_own%/}/lxtest.$$"
        CG_VER=1
        cg_file=memory.limit_in_bytes
    else
        cg_mnt=$(cg_mount cgroup2)
        cg_own=$(awk -F: '$1 == "0" {print $3; exit}' /proc/self/cgroup)
        if [ -z "$cg_mnt" ] || [ -z "$cg_own" ]; then
            CG_WHY="no cgroup file system with the memory controller"
            return 1
        fi
        cg_parent="$cg_mnt${cg_own%/}"
        grep -qw memory "$cg_parent/cgroup.subtree_control" 2>/dev/null ||
            echo +memory >"$cg_parent/cgroup.subtree_control" 2>/dev/null || {
            CG_WHY="cannot enable the memory controller below $cg_parent"
            return 1
        }
        CG="$cg_parent/lxtest.$$"
        CG_VER=2
        cg_file=memory.max
    fi
    if ! mkdir "$CG" 2>/dev/null; then
        CG_WHY="cannot create $CG"
        CG=
        return 1
    fi
    if ! echo "$1" >"$CG/$cg_file" 2>/dev/null; then
        CG_WHY="cannot write $CG/$cg_file"
        cg_remove
        return 1
    fi
    [ -e "$CG/memory.memsw.limit_in_bytes" ] && echo "$1" >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null
    [ -e "$CG/memory.swap.max" ] && echo 0 >"$CG/memory.swap.max" 2>/dev/null
    return 0
}

cg_run() {
    cg_io=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell
    CG_IOFILE=$cg_io sh -c 'echo $$ >"$0/cgroup.procs" || exit 126
"$@"
rc=$?
grep -E "^(read|write)_bytes:" /proc/$$/io >"$CG_IOFILE"
exit $rc' "$CG" "$@"
}

cg_peak() {
    if [ "$CG_VER" = 1 ]; then
        cat "$CG/memory.max_usage_in_bytes"
    elif [ -e "$CG/memory.peak" ]; then
        cat "$CG/memory.peak"
    fi
}

cg_remove() {
    [ -n "$CG" ] && [ -d "$CG" ] && rmdir "$CG" 2>/dev/null
    CG=
}

uncache() {
    for uc_f in "$@"; do
        sync "$uc_f"
        dd if="$uc_f" iflag=nocache count=0 status=none
    done
}
