/* libFuzzer harness of the compiled hot loops (mmdaemon/_speedups.c), built by
 * fuzz/fuzz-c.sh (`make fuzz-c`; see fuzz/README.md).
 *
 * The extension is built with -fsanitize=fuzzer-no-link,address,undefined, so libFuzzer's
 * coverage is that of the C code that reads venue bytes and keeps the book, and ASan/UBSan
 * watch it. This program embeds CPython and hands every input to
 * fuzz/speedups_target.py:one_input, which runs it through the compiled code and the Python
 * reference and raises on any difference; an exception is printed and the process aborts, so
 * libFuzzer records the input as a crash. atheris was the other way; its wheels carry no
 * libFuzzer-linked ASan runtime for an instrumented extension, and here libFuzzer, ASan and
 * the instrumentation all come from the one clang that builds both.
 *
 * Environment (set by fuzz/fuzz-c.sh): MMDAEMON_FUZZ_PYTHON, the venv's interpreter (its
 * site-packages); PYTHONPATH with fuzz/preload (which loads MMDAEMON_SPEEDUPS_SO as
 * mmdaemon._speedups), fuzz/ and the repository; PYTHONMALLOC=malloc, so that every Python
 * object is a malloc block ASan can see the edges of.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static PyObject *one_input;

static void
fail(const char *what)
{
    if (PyErr_Occurred()) {
        PyErr_Print();
    }
    fprintf(stderr, "speedups_fuzzer: %s\n", what);
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;  /* SIGINT and the rest stay libFuzzer's */
    const char *python = getenv("MMDAEMON_FUZZ_PYTHON");
    if (python == NULL || python[0] == '\0') {
        fprintf(stderr, "speedups_fuzzer: set MMDAEMON_FUZZ_PYTHON to the venv's python "
                        "(fuzz/fuzz-c.sh does)\n");
        exit(2);
    }
    /* as if started as that interpreter: its pyvenv.cfg, hence its site-packages */
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python);
    if (!PyStatus_Exception(status)) {
        status = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        Py_ExitStatusException(status);
    }
    PyObject *target = PyImport_ImportModule("speedups_target");
    if (target == NULL) {
        fail("cannot import speedups_target (is fuzz/ on PYTHONPATH?)");
    }
    one_input = PyObject_GetAttrString(target, "one_input");
    Py_DECREF(target);
    if (one_input == NULL) {
        fail("speedups_target has no one_input");
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *input = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    if (input == NULL) {
        fail("no memory for the input");
    }
    PyObject *result = PyObject_CallOneArg(one_input, input);
    Py_DECREF(input);
    if (result == NULL) {
        fail("finding: the input above raised (a crash file follows)");
    }
    Py_DECREF(result);
    return 0;
}
