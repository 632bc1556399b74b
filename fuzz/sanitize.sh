#!/usr/bin/env bash
# `make sanitize`: the compiled hot loops (mmdaemon/_speedups.c) built with AddressSanitizer
# and UndefinedBehaviorSanitizer, then the codec, book and speedups tests and every fuzz
# corpus run through that build; last, the libFuzzer harness replays its corpus. Fails on any
# test failure and on any sanitizer report. The normal in-tree build is left alone: this one
# goes to build/sanitize/ and is loaded by fuzz/preload/sitecustomize.py. See fuzz/README.md.
source "$(dirname "$0")/common.sh"
cd "$REPO"

FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=undefined -shared-libasan -Wall)
need "make sanitize" "links_with $CLANG ${FLAGS[*]}" "${CLANG_PACKAGES[@]}"

OUT=$REPO/build/sanitize
LOGS=$OUT/logs
SO=$OUT/_speedups$EXT_SUFFIX
rm -rf "$OUT"
mkdir -p "$LOGS"
echo "== build: $CLANG ${FLAGS[*]} -> $SO"
"$CLANG" -shared -fPIC "${FLAGS[@]}" -I"$INCLUDEPY" mmdaemon/_speedups.c -o "$SO"
"$CLANG" -shared -fPIC "${FLAGS[@]}" fuzz/canary.c -o "$OUT/canary.so"
imports=$(nm -D --undefined-only "$SO")  # not piped into grep -q: nm would die of SIGPIPE
for symbol in __asan_report_load8 __ubsan_handle_add_overflow_abort; do
    grep -q " $symbol\$" <<<"$imports" \
        || { echo "FAILED: $SO is not instrumented ($symbol missing)" >&2; exit 1; }
done

# detect_leaks=0: CPython does not free all it holds at exit, nor do its extensions (orjson),
# so LeakSanitizer would report at every exit. What the compiled code can leak is references
# it fails to drop; tests/unit/test_speedups_match_python.py measures those with tracemalloc.
sanitized() {
    env LD_PRELOAD="$(asan_runtime)" ASAN_SYMBOLIZER_PATH="$(symbolizer)" \
        ASAN_OPTIONS="detect_leaks=0:detect_stack_use_after_return=1:log_path=$LOGS/asan" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        PYTHONMALLOC=malloc PYTHONPATH="$REPO/fuzz/preload" MMDAEMON_SPEEDUPS_SO="$SO" \
        MMDAEMON_PURE_PYTHON= "$@"
}

echo "== canaries: a planted heap overflow and a signed overflow must each fail with a report"
for canary in "heap 8 heap-buffer-overflow" "int 2147483647 signed integer overflow"; do
    read -r name arg report <<<"$canary"
    if sanitized "$PY" -c "import ctypes; ctypes.CDLL('$OUT/canary.so').canary_$name($arg)" \
        2>/dev/null; then
        echo "FAILED: canary_$name ran to the end: the sanitizers are not in force" >&2
        exit 1
    fi
    grep -qs "$report" "$LOGS"/* \
        || { echo "FAILED: canary_$name left no '$report' report in $LOGS" >&2; exit 1; }
    echo "canary_$name: failed with '$report', as it must"
    rm -f "$LOGS"/*
done

echo "== tests through the sanitized build"
sanitized "$PY" -m pytest -q -p sanitized_build -p no:cacheprovider \
    tests/unit/test_speedups.py tests/unit/test_speedups_match_python.py \
    tests/unit/test_binance_codec.py tests/unit/test_book.py \
    tests/process/test_speedups_in_a_fresh_interpreter.py
no_reports "$LOGS"

echo "== fuzz corpora through the sanitized build"
sanitized "$PY" fuzz/seeds.py
if "$PY" -c "import atheris" 2>/dev/null; then
    for harness in codec config recording; do  # -runs=0: the corpus only, no fuzzing
        sanitized "$PY" fuzz/fuzz_$harness.py -runs=0 "fuzz/corpus/$harness" >"$OUT/$harness.log" 2>&1 \
            || { cat "$OUT/$harness.log" >&2; echo "FAILED: fuzz_$harness.py" >&2; exit 1; }
        grep -E "files found|^Done" "$OUT/$harness.log" | sed "s/^/fuzz_$harness.py: /"
    done
else
    echo "atheris is not installed: the codec corpus replays through speedups_target only"
fi
sanitized "$PY" fuzz/speedups_target.py fuzz/corpus-c fuzz/corpus/codec
no_reports "$LOGS"

echo "== the libFuzzer harness replays its corpus"
bash "$REPO/fuzz/fuzz-c.sh" 0
echo "sanitize: clean (no ASan or UBSan report)"
