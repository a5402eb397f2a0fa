# stlib.sh - write safetensors files by hand in shell tests (sourced after
# lib.sh; POSIX sh).  The bytes come from printf and dd, not from loxstream,
# so that the tests check the reader against an independent writer.

# le64 N: the 8 bytes of N, little-endian, on stdout (N < 2^63).
le64() {
    _n=$1
    _i=0
    while [ "$_i" -lt 8 ]; do
        # shellcheck disable=SC2059 # an octal escape built on purpose
        printf "\\$(printf %03o $((_n % 256)))"
        _n=$((_n / 256))
        _i=$((_i + 1))
    done
}

# zeros COUNT: COUNT zero bytes on stdout.
zeros() {
    [ "$1" -gt 0 ] || return 0
    dd if=/dev/zero bs="$1" count=1 2>/dev/null
}

# nbytes STRING: length of STRING in bytes.
nbytes() {
    printf %s "$1" | wc -c | tr -d ' '
}

# st_raw FILE N BODY [DATA]: an 8-byte length N (possibly lying), the bytes
# of BODY, then DATA zero bytes.
st_raw() {
    { le64 "$2"; printf %s "$3"; zeros "${4:-0}"; } >"$1"
}

# st_file FILE JSON [DATA]: a well-framed file: N = length of JSON.
st_file() {
    st_raw "$1" "$(nbytes "$2")" "$2" "${3:-0}"
}

# header_len FILE: N as stored in the first 8 bytes of FILE (read with od).
header_len() {
    # shellcheck disable=SC2046 # the 8 bytes as 8 words
    set -- $(od -An -tu1 -N8 "$1")
    echo $(($1 + 256 * ($2 + 256 * ($3 + 256 * ($4 + 256 * ($5 + 256 * ($6 + 256 * ($7 + 256 * $8))))))))
}
