/* vigil._spawn: how the container entrypoint starts CMD, as tini does.

   A plain CPython extension rather than a function of vigil._sysc: loading
   cffi's backend costs ~0.9 ms, a tenth of `vigil run`'s whole start; this
   module loads in ~0.2 ms. The child runs no Python between fork and exec:
   its own process group (the terminal's foreground when fg_tty >= 0), then
   the signal state vigil itself was started with (bit N-1 of `blocked`
   blocks signal N, of `ignored` keeps it ignored; every other signal is
   reset to its default), then execvpe: the PATH lookup and the /bin/sh
   fallback for a script without #! are tini's execvp's. A failed step is
   written as (step, errno) to the close-on-exec report_fd, as vigil._sysc's
   vigil_spawn reports its steps (1, 13 and 15 are the same ones). */

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

enum { STEP_SIGNALS = 1, STEP_EXEC = 13, STEP_PGROUP = 15 };

static void fail(int fd, int step) {
    int msg[2] = { step, errno };
    ssize_t ignored = write(fd, msg, sizeof msg);
    (void)ignored;
    _exit(127);
}

static void child(char **argv, char **envp, int fg_tty, unsigned long long blocked,
                  unsigned long long ignored, int rfd) {
    /* Every signal is still blocked, so taking the terminal raises no SIGTTOU. */
    if (setpgid(0, 0) < 0) fail(rfd, STEP_PGROUP);
    if (fg_tty >= 0 && tcsetpgrp(fg_tty, getpid()) < 0) fail(rfd, STEP_PGROUP);
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig < NSIG && sig <= 64; sig++) {
        unsigned long long bit = 1ULL << (sig - 1);
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, (ignored & bit) ? SIG_IGN : SIG_DFL);
        if (blocked & bit) sigaddset(&set, sig);  /* glibc refuses its own two: fine */
    }
    if (sigprocmask(SIG_SETMASK, &set, NULL) < 0) fail(rfd, STEP_SIGNALS);
    execvpe(argv[0], argv, envp);
    fail(rfd, STEP_EXEC);
}

/* A NULL-terminated copy of a list of bytes, or NULL with an exception set. */
static char **strings(PyObject *list) {
    Py_ssize_t n = PyList_GET_SIZE(list);
    char **out = PyMem_Calloc(n + 1, sizeof(char *));
    if (out == NULL) return (char **)PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyBytes_AsString(PyList_GET_ITEM(list, i));  /* borrowed: the list keeps it */
        if (out[i] == NULL) {
            PyMem_Free(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *spawn(PyObject *self, PyObject *args) {
    PyObject *argv_list, *env_list;
    int fg_tty, report_fd;
    unsigned long long blocked, ignored;
    if (!PyArg_ParseTuple(args, "O!O!iKKi", &PyList_Type, &argv_list, &PyList_Type, &env_list,
                          &fg_tty, &blocked, &ignored, &report_fd))
        return NULL;
    if (PyList_GET_SIZE(argv_list) == 0) {
        PyErr_SetString(PyExc_ValueError, "spawn: empty argv");
        return NULL;
    }
    char **argv = strings(argv_list);
    if (argv == NULL) return NULL;
    char **envp = strings(env_list);
    if (envp == NULL) {
        PyMem_Free(argv);
        return NULL;
    }
    /* Signals stay blocked across fork, so no Python handler runs in the child. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) child(argv, envp, fg_tty, blocked, ignored, report_fd);
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    PyMem_Free(argv);
    PyMem_Free(envp);
    if (pid < 0) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(pid);
}

/* The entrypoint's two prctl calls (parent-death signal, subreaper), here
   so that its start loads no other extension for them. */
static PyObject *set_process(PyObject *self, PyObject *args) {
    int option;
    unsigned long value;
    if (!PyArg_ParseTuple(args, "ik", &option, &value)) return NULL;
    if (option != PR_SET_PDEATHSIG && option != PR_SET_CHILD_SUBREAPER) {
        PyErr_SetString(PyExc_ValueError, "set_process: only PDEATHSIG and CHILD_SUBREAPER");
        return NULL;
    }
    if (prctl(option, value, 0, 0, 0) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS,
     "spawn(argv, envp, fg_tty, blocked, ignored, report_fd) -> pid: CMD as tini starts it."},
    {"set_process", set_process, METH_VARARGS,
     "set_process(option, value): prctl PR_SET_PDEATHSIG or PR_SET_CHILD_SUBREAPER."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "vigil._spawn", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__spawn(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "PR_SET_PDEATHSIG", PR_SET_PDEATHSIG) < 0 ||
        PyModule_AddIntConstant(m, "PR_SET_CHILD_SUBREAPER", PR_SET_CHILD_SUBREAPER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
