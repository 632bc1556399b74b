# Sourced by fuzz/sanitize.sh and fuzz/fuzz-c.sh: where things are, the interpreter's build
# facts, and the system packages they need.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || { echo "$PY missing: run 'make .venv/.installed' first" >&2; exit 1; }

pyvar() { "$PY" -c "import sysconfig; print(sysconfig.get_config_var('$1'))"; }
INCLUDEPY=$(pyvar INCLUDEPY)
EXT_SUFFIX=$(pyvar EXT_SUFFIX)
PYLIBDIR=$(pyvar LIBDIR)
PYVERSION=$(pyvar VERSION)

# One clang for both: ASan, UBSan, libFuzzer and the instrumentation of one LLVM release. Its
# shared ASan runtime holds the UBSan handlers too, so both report through ASAN_OPTIONS'
# log_path (gcc's separate libubsan, preloaded beside libasan, ignored it).
CLANG=${CLANG:-clang-14}
CLANG_PACKAGES=(clang-14 libclang-rt-14-dev llvm-14)  # llvm-14: llvm-symbolizer for traces
asan_runtime() { "$CLANG" -print-file-name=libclang_rt.asan-x86_64.so; }
symbolizer() { command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true; }

# need WHAT CHECK PACKAGE...: returns when the shell command CHECK succeeds, installing the
# Debian PACKAGEs first when it does not and this runs as root with apt (as `make test` does
# for its system tools); elsewhere WHAT is skipped with the reason, and the script exits 0.
need() {
    local what=$1 check=$2
    shift 2
    if eval "$check" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "$what: installing $* with apt"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
            "$@" >/dev/null
        if eval "$check" >/dev/null 2>&1; then
            return 0
        fi
        echo "$what: '$check' still fails after installing $*" >&2
        exit 1
    fi
    echo "SKIPPED $what: it needs $* (apt-get install $* as root); not root with apt here"
    exit 0
}

# links_with CC FLAGS...: CC builds and links a program with FLAGS (the sanitizer runtimes are
# there).
links_with() {
    local cc=$1 tmp
    shift
    tmp=$(mktemp -d)
    echo 'int main(void) { return 0; }' >"$tmp/t.c"
    "$cc" "$@" "$tmp/t.c" -o "$tmp/t"
    local rc=$?
    rm -rf "$tmp"
    return $rc
}

# no_reports DIR: fails, printing them, when the sanitizers wrote any report into DIR.
no_reports() {
    if [ -n "$(ls -A "$1")" ]; then
        cat "$1"/* >&2
        echo "FAILED: sanitizer reports above ($1)" >&2
        exit 1
    fi
}
