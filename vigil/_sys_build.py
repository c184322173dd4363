"""Builds vigil._sysc, the C half of the `sys` seam (cffi API mode).

Compiled when the package is installed, so PID 1 never parses C declarations
at run time (pycparser costs ~6 MB resident). It holds what Python's
standard library lacks: a spawn whose child runs no Python between fork and
exec, and the mount/reboot family of system calls.
"""

from __future__ import annotations

import cffi

CDEF = """
struct vigil_spawn {
    const char *path;            /* program: absolute, relative, or a name to look up */
    const char *search;          /* PATH to search when path has no slash */
    char *const *argv;
    char *const *envp;
    const char *cwd;             /* NULL: inherit */
    int umask;                   /* -1: inherit */
    int uid, gid;                /* -1: keep */
    int ngroups;                 /* -1: keep */
    const unsigned int *groups;
    int nlimits;
    const int *limit_resource;
    const unsigned long long *limit_soft, *limit_hard;
    int no_new_privs;
    int ncaps;                   /* -1: leave the bounding set alone */
    const int *caps_keep;
    int fd_in, fd_out, fd_err;   /* what becomes 0, 1 and 2 */
    int extra_fd, extra_target;  /* a readiness fd and its number in the child; -1 none */
    int new_session;
    int controlling_tty;         /* make fd 0 the controlling terminal */
    int report_fd;               /* close-on-exec pipe: step and errno on failure */
    int cgroup_fd;               /* cgroup.procs to join first; -1 none */
    int new_pgroup;              /* own process group without a new session */
    int fg_tty;                  /* terminal whose foreground group it becomes; -1 none */
};
int vigil_spawn(const struct vigil_spawn *s);
int vigil_fs_ids(int uid, int gid, int ngroups, const unsigned int *groups);
int vigil_timerfd_realtime(void);
int vigil_timerfd_at(int fd, long long seconds, long nanoseconds);

int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int reboot(int cmd);
int swapon(const char *path, int flags);
int swapoff(const char *path);
int vigil_finit_module(int fd, const char *params, int flags);
int sethostname(const char *name, size_t len);
"""

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <termios.h>

struct vigil_spawn {
    const char *path;
    const char *search;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int umask;
    int uid, gid;
    int ngroups;
    const unsigned int *groups;
    int nlimits;
    const int *limit_resource;
    const unsigned long long *limit_soft, *limit_hard;
    int no_new_privs;
    int ncaps;
    const int *caps_keep;
    int fd_in, fd_out, fd_err;
    int extra_fd, extra_target;
    int new_session;
    int controlling_tty;
    int report_fd;
    int cgroup_fd;
    int new_pgroup;
    int fg_tty;
};

/* Steps, reported with errno when one fails; Python maps them to words. */
enum { STEP_SIGNALS = 1, STEP_SESSION, STEP_FDS, STEP_TTY, STEP_LIMITS, STEP_UMASK,
       STEP_CAPS, STEP_GROUPS, STEP_GID, STEP_UID, STEP_NO_NEW_PRIVS, STEP_CWD, STEP_EXEC,
       STEP_CGROUP, STEP_PGROUP };

static __attribute__((noreturn)) void fail(int fd, int step) {
    int msg[2] = { step, errno };
    ssize_t ignored = write(fd, msg, sizeof msg);
    (void)ignored;
    _exit(127);
}

/* Moves fd above every target so a later dup2 cannot clobber it. */
static int lift(int fd) {
    return fd < 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

static void try_exec(const struct vigil_spawn *s) {
    if (strchr(s->path, '/') || !s->search) {
        execve(s->path, s->argv, s->envp);
        return;
    }
    /* Like execvpe, but with the service's PATH, not the daemon's. */
    char buf[PATH_MAX];
    int saved = ENOENT;
    const char *p = s->search;
    size_t nlen = strlen(s->path);
    while (1) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen + nlen + 2 <= sizeof buf) {
            if (dlen) { memcpy(buf, p, dlen); buf[dlen] = '/'; dlen++; }
            memcpy(buf + dlen, s->path, nlen + 1);
            execve(buf, s->argv, s->envp);
            if (errno == EACCES) saved = EACCES;
            else if (errno != ENOENT && errno != ENOTDIR) saved = errno;
        }
        if (!end) break;
        p = end + 1;
    }
    errno = saved;
}

/* WATCHDOG_PID (sd_watchdog_enabled: the watchdog is this process's, not a
   child's that inherits the variable) is the child's own pid, known only
   here: the parent leaves room for it, "WATCHDOG_PID=" and ten spaces. */
static void own_pid(char *const *envp) {
    for (; envp && *envp; envp++) {
        if (strncmp(*envp, "WATCHDOG_PID=          ", 23) != 0) continue;
        char digits[12];
        int n = 0;
        for (long pid = getpid(); pid > 0 && n < 10; pid /= 10) digits[n++] = '0' + pid % 10;
        char *d = *envp + 13;
        while (n) *d++ = digits[--n];
        *d = 0;
    }
}

/* Out of line, as CPython keeps its child: a vfork child's frame must lie
   below the parent's, never in it (inlined, its buffers would share
   vigil_spawn's frame, which the parent reads again after). */
static __attribute__((noinline, noreturn)) void child(const struct vigil_spawn *s,
                                                       const sigset_t *empty) {
    int rfd = s->report_fd;
    own_pid(s->envp);
    /* Join the unit's cgroup before anything can fork, so nothing escapes it. */
    if (s->cgroup_fd >= 0 && write(s->cgroup_fd, "0", 1) != 1) fail(rfd, STEP_CGROUP);
    /* Still with every signal blocked, so taking the terminal raises no SIGTTOU. */
    if (s->new_pgroup && setpgid(0, 0) < 0) fail(rfd, STEP_PGROUP);
    if (s->fg_tty >= 0 && tcsetpgrp(s->fg_tty, getpid()) < 0) fail(rfd, STEP_PGROUP);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    if (sigprocmask(SIG_SETMASK, empty, NULL) < 0) fail(rfd, STEP_SIGNALS);
    if (s->new_session && setsid() < 0) fail(rfd, STEP_SESSION);

    int in = lift(s->fd_in), out = lift(s->fd_out), err = lift(s->fd_err);
    int extra = lift(s->extra_fd);
    rfd = lift(rfd);
    if ((s->fd_in >= 0 && in < 0) || (s->fd_out >= 0 && out < 0) ||
        (s->fd_err >= 0 && err < 0) || (s->extra_fd >= 0 && extra < 0) || rfd < 0)
        fail(s->report_fd, STEP_FDS);
    /* Everything else the daemon holds closes at exec. */
    if (syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < (max > 0 ? max : 1024); fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if ((in >= 0 && dup2(in, 0) < 0) || (out >= 0 && dup2(out, 1) < 0) ||
        (err >= 0 && dup2(err, 2) < 0) || (extra >= 0 && dup2(extra, s->extra_target) < 0))
        fail(rfd, STEP_FDS);
    if (s->controlling_tty && ioctl(0, TIOCSCTTY, 1) < 0) fail(rfd, STEP_TTY);

    for (int i = 0; i < s->nlimits; i++) {
        struct rlimit rl = { s->limit_soft[i], s->limit_hard[i] };
        /* the system call itself: a libc may signal every thread for it */
        if (syscall(SYS_prlimit64, 0, s->limit_resource[i], &rl, NULL) < 0)
            fail(rfd, STEP_LIMITS);
    }
    if (s->umask >= 0) umask(s->umask);
    if (s->ncaps >= 0) {
        for (int cap = 0; cap < 64; cap++) {
            int keep = 0;
            for (int i = 0; i < s->ncaps; i++) if (s->caps_keep[i] == cap) keep = 1;
            if (!keep && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                fail(rfd, STEP_CAPS);
        }
    }
    if (s->ngroups >= 0 && setgroups(s->ngroups, (const gid_t *)s->groups) < 0)
        fail(rfd, STEP_GROUPS);
    if (s->gid >= 0 && setgid(s->gid) < 0) fail(rfd, STEP_GID);
    if (s->uid >= 0 && setuid(s->uid) < 0) fail(rfd, STEP_UID);
    if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(rfd, STEP_NO_NEW_PRIVS);
    if (s->cwd && chdir(s->cwd) < 0) fail(rfd, STEP_CWD);
    try_exec(s);
    fail(rfd, STEP_EXEC);
}

/* The child made and started; in the parent, its pid. Out of line for the
   same reason as child(): the parent returns through this frame alone. */
static __attribute__((noinline)) pid_t start_child(const struct vigil_spawn *s,
                                                  const sigset_t *empty, int borrow) {
    pid_t pid = borrow ? vfork() : -1;
    if (pid < 0)  /* not borrowing, or vfork refused (some seccomp filters): fork */
        pid = fork();
    if (pid == 0) child(s, empty);
    return pid;
}

/* Returns the child's pid, or -errno if fork itself failed. Signals stay
   blocked across fork so no Python handler can run in the child.
   A child that changes no credentials and takes no terminal is made with
   vfork (as CPython's subprocess and glibc's posix_spawn do): it borrows the
   daemon's memory until it execs, so no page table is copied and the daemon
   takes no copy-on-write faults afterwards; the daemon waits until the
   child has exec'd (or failed). The child writes to its own frame below
   start_child's, to the report pipe, to the per-process state of the kernel
   (its signal handlers are its own: no CLONE_SIGHAND) and into the argv and
   environment buffers syscalls.spawn builds for this one call (own_pid).
   glibc's setuid, setgid and setgroups signal every thread of the process
   they believe they are in (setxid), which a child sharing the daemon's
   memory must not do: a unit with user, group or groups is forked. So is
   one that takes a terminal: ^Z there could stop the child before exec, and
   with it the daemon. What vfork costs: a child that blocks before exec (a
   hung network filesystem in chdir or execve, a frozen cgroup) holds the
   daemon until it ends. */
int vigil_spawn(const struct vigil_spawn *s) {
    sigset_t all, old, empty;
    sigfillset(&all);
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &all, &old);
    int borrow = s->uid < 0 && s->gid < 0 && s->ngroups < 0 && s->fg_tty < 0 &&
                 !s->controlling_tty;
    pid_t pid = start_child(s, &empty, borrow);
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid < 0 ? -saved : pid;
}

/* Sets this thread's filesystem identity: the uid and gid (and groups, unless
   ngroups < 0) that the kernel checks paths against, nothing else. Raw system
   calls: glibc's setgroups would change every thread. With a fsuid other
   than 0 the kernel also drops the capabilities that bypass file
   permissions, and gives them back with fsuid 0. Returns 0 or -errno. */
int vigil_fs_ids(int uid, int gid, int ngroups, const unsigned int *groups) {
    if (ngroups >= 0 && syscall(SYS_setgroups, ngroups, groups) < 0) return -errno;
    syscall(SYS_setfsgid, gid);
    syscall(SYS_setfsuid, uid);
    /* setfsuid reports no error; -1 (invalid) asks for the current value */
    if ((int)syscall(SYS_setfsgid, -1) != gid || (int)syscall(SYS_setfsuid, -1) != uid)
        return -EPERM;
    return 0;
}

/* Calendar timers (vigil/engine/timers.py): wakes at a wall-clock time, and at
   once when the wall clock is set (read() then fails with ECANCELED). */
int vigil_timerfd_realtime(void) {
    return timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
}

int vigil_timerfd_at(int fd, long long seconds, long nanoseconds) {
    struct itimerspec spec = {{0, 0}, {(time_t)seconds, nanoseconds}};
    return timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &spec, NULL);
}

int vigil_finit_module(int fd, const char *params, int flags) {
    return syscall(SYS_finit_module, fd, params, flags);
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("vigil._sysc", SOURCE)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
