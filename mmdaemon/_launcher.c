/*
 * mmdaemond: start `python -P -m mmdaemon ARGS...` with the operator's signals blocked.
 *
 * Why: until Python has installed a handler, SIGUSR1 (the kill switch), SIGUSR2, SIGTERM,
 * SIGINT and SIGHUP have their default action, which ends the process. A kill switch
 * flipped in the first ~0.3 s of a start would kill the daemon without latching the kill,
 * and the next start would quote. Blocked signals stay pending across execve(2), so this
 * launcher blocks them before anything else and execs the interpreter of the directory
 * it was started from (the venv's bin/, where the runbook links it: `python`); mmdaemon/early_signals.py records them and unblocks,
 * and the service replays them once its journal and kill latch are open.
 *
 * Linked statically: no dynamic loader runs before main(), so the window between the
 * kernel's execve and the sigprocmask below is the C runtime's start-up alone.
 * Linux only, like the systemd unit that runs it. A signal sent while the kernel is
 * still inside execve(2) (before this program's first instruction) takes its default
 * action: no program can catch that one (docs/reliability.md).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const interpreters[] = {"python", "python3"};

int main(int argc, char **argv) {
    sigset_t operator_signals;
    sigemptyset(&operator_signals);
    sigaddset(&operator_signals, SIGUSR1);
    sigaddset(&operator_signals, SIGUSR2);
    sigaddset(&operator_signals, SIGTERM);
    sigaddset(&operator_signals, SIGINT);
    sigaddset(&operator_signals, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &operator_signals, NULL) != 0) {
        perror("mmdaemond: sigprocmask");
        return 1;
    }

    /* The directory we were started from: argv[0]'s, as given (systemd passes the
     * ExecStart= path), so a symlink in the venv's bin/ finds that venv's python; a bare
     * name is looked up on PATH, as the shell did; else our own file's (/proc/self/exe). */
    char self[PATH_MAX];
    self[0] = '\0';
    if (argc > 0 && strchr(argv[0], '/') != NULL && strlen(argv[0]) < sizeof self) {
        strcpy(self, argv[0]);
    } else if (argc > 0 && getenv("PATH") != NULL) {
        const char *path = getenv("PATH");
        while (*path != '\0' && self[0] == '\0') {
            size_t dir_len = strcspn(path, ":");
            int n = snprintf(self, sizeof self, "%.*s/%s", (int)dir_len, path, argv[0]);
            if (n <= 0 || (size_t)n >= sizeof self || dir_len == 0 ||
                access(self, X_OK) != 0) {
                self[0] = '\0';
            }
            path += dir_len + (path[dir_len] == ':');
        }
    }
    if (self[0] == '\0') {
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len <= 0) {
            perror("mmdaemond: readlink /proc/self/exe");
            return 1;
        }
        self[len] = '\0';
    }
    char *slash = strrchr(self, '/');
    if (slash == NULL) {
        fprintf(stderr, "mmdaemond: cannot tell its directory from %s\n", self);
        return 1;
    }
    *slash = '\0';

    /* argv: python -P -m mmdaemon ARGS... NULL. -P: the working directory is not put on
     * sys.path, so an `mmdaemon` package in whatever directory it starts from (root's
     * /tmp, a checkout) is never what runs. */
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL) {
        perror("mmdaemond: calloc");
        return 1;
    }
    args[1] = "-P";
    args[2] = "-m";
    args[3] = "mmdaemon";
    for (int i = 1; i < argc; i++) args[i + 3] = argv[i];

    char python[PATH_MAX];
    for (size_t i = 0; i < sizeof interpreters / sizeof *interpreters; i++) {
        int n = snprintf(python, sizeof python, "%s/%s", self, interpreters[i]);
        if (n < 0 || (size_t)n >= sizeof python) continue;
        args[0] = python;
        execv(python, args); /* returns only on failure */
        if (errno != ENOENT) {
            fprintf(stderr, "mmdaemond: cannot run %s: %s\n", python, strerror(errno));
            return 127;
        }
    }
    fprintf(stderr, "mmdaemond: no python or python3 beside it in %s\n", self);
    return 127;
}
