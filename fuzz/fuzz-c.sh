#!/usr/bin/env bash
# `make fuzz-c [FUZZ_SECONDS=N] [FUZZ_ARGS=...]`: coverage-guided fuzzing of the compiled hot
# loops (mmdaemon/_speedups.c) with libFuzzer, under AddressSanitizer and UBSan.
#
#     fuzz/fuzz-c.sh SECONDS [libFuzzer flags...]
#     fuzz/fuzz-c.sh 0 [INPUT...]
#
# SECONDS 0 replays fuzz/corpus-c, or only the INPUT files given (a crash file, say), and
# stops. The extension and fuzz/speedups_fuzzer.c are built into $FUZZ_C_BUILD (default
# build/fuzz-c/; the normal in-tree build is left alone); new inputs go to its corpus/,
# crashes to its crash-*; fuzz/corpus-c, the corpus in the repository, is only read. See
# fuzz/README.md.
source "$(dirname "$0")/common.sh"
cd "$REPO"
SECONDS_TO_RUN=${1:?usage: fuzz/fuzz-c.sh SECONDS [libFuzzer flags...]}
shift

FLAGS=(-g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wall)
need "make fuzz-c" "links_with $CLANG ${FLAGS[*]} -fsanitize=fuzzer-no-link,address,undefined" \
    "${CLANG_PACKAGES[@]}"

OUT=${FUZZ_C_BUILD:-$REPO/build/fuzz-c}
SO=$OUT/_speedups$EXT_SUFFIX
mkdir -p "$OUT/corpus"
"$CLANG" -shared -fPIC "${FLAGS[@]}" -fsanitize=fuzzer-no-link,address,undefined \
    -I"$INCLUDEPY" mmdaemon/_speedups.c -o "$SO"
# -rdynamic: the extension, loaded later, finds the sanitizer and libFuzzer symbols here
"$CLANG" "${FLAGS[@]}" -fsanitize=fuzzer,address,undefined -I"$INCLUDEPY" \
    fuzz/speedups_fuzzer.c -L"$PYLIBDIR" -lpython"$PYVERSION" -Wl,-rpath,"$PYLIBDIR" -rdynamic \
    -o "$OUT/speedups_fuzzer"

export MMDAEMON_FUZZ_PYTHON=$PY MMDAEMON_SPEEDUPS_SO=$SO PYTHONMALLOC=malloc \
    PYTHONPATH=$REPO/fuzz/preload:$REPO/fuzz:$REPO MMDAEMON_PURE_PYTHON= \
    ASAN_SYMBOLIZER_PATH=$(symbolizer) \
    ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ "$SECONDS_TO_RUN" = 0 ] && [ $# -gt 0 ]; then
    "$OUT/speedups_fuzzer" "$@"
elif [ "$SECONDS_TO_RUN" = 0 ]; then
    "$OUT/speedups_fuzzer" -runs=0 fuzz/corpus-c
else
    "$OUT/speedups_fuzzer" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 \
        -timeout=10 -max_len=16384 -dict=fuzz/speedups.dict -artifact_prefix="$OUT/" "$@" \
        "$OUT/corpus" fuzz/corpus-c
fi
