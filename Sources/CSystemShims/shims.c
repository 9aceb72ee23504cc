#define _GNU_SOURCE
#include <sys/socket.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "CSystemShims.h"

_Static_assert(sizeof(struct ucred) == sizeof(pst_peer_credentials), "ucred layout");

int pst_get_peer_credentials(int fd, pst_peer_credentials *out) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -1;
    }
    out->pid = cred.pid;
    out->uid = cred.uid;
    out->gid = cred.gid;
    return 0;
}

unsigned long pst_ucred_size(void) { return sizeof(struct ucred); }

#include <unistd.h>
int pst_syncfs(int fd) { return syncfs(fd); }

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <termios.h>

int pst_spawn_file_actions_close_from(void *actions, int lowest_fd) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowest_fd);
}

int pst_spawn_in_new_process_group(pid_t *pid, const char *file, char *const argv[],
                                   char *const envp[], int terminal_fd) {
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
    sigset_t all_signals, no_signals;
    int result = posix_spawnattr_init(&attributes);
    if (result != 0) return result;
    result = posix_spawn_file_actions_init(&actions);
    if (result != 0) {
        posix_spawnattr_destroy(&attributes);
        return result;
    }
    sigfillset(&all_signals);
    sigemptyset(&no_signals);
    short flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (result == 0) result = posix_spawnattr_setflags(&attributes, flags);
    if (result == 0) result = posix_spawnattr_setpgroup(&attributes, 0);
    if (result == 0) result = posix_spawnattr_setsigdefault(&attributes, &all_signals);
    if (result == 0) result = posix_spawnattr_setsigmask(&attributes, &no_signals);
    if (result == 0 && terminal_fd >= 0) result = posix_spawn_file_actions_addtcsetpgrp_np(&actions, terminal_fd);
    // The script gets stdin, stdout and stderr only, like the reference's
    // close_fds: an inherited session socket would keep the session (and the
    // storage RW) alive after kvmd-pstrun dies, and SwiftNIO's descriptors
    // are not all close-on-exec.
    if (result == 0) result = pst_spawn_file_actions_close_from(&actions, 3);
    if (result == 0) result = posix_spawnp(pid, file, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return result;
}

int pst_has_exited_keeping_zombie(pid_t pid) {
    siginfo_t info;
    int result;
    info.si_pid = 0;
    do {
        result = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (result != 0 && errno == EINTR);
    if (result != 0) return -1;
    // WNOHANG leaves si_pid zero while the child is still running.
    return info.si_pid == pid ? 1 : 0;
}

#include <sys/signalfd.h>

int pst_signalfd_open(const int *signals, int count, sigset_t *previous_mask) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int index = 0; index < count; index++) sigaddset(&mask, signals[index]);
    int result = pthread_sigmask(SIG_BLOCK, &mask, previous_mask);
    if (result != 0) {
        errno = result;
        return -1;
    }
    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        pthread_sigmask(SIG_SETMASK, previous_mask, NULL);
        errno = saved;
    }
    return fd;
}

int pst_signalfd_next(int fd) {
    struct signalfd_siginfo info;
    ssize_t got;
    do {
        got = read(fd, &info, sizeof info);
    } while (got < 0 && errno == EINTR);
    if (got < 0) return errno == EAGAIN ? 0 : -1;
    return got == (ssize_t)sizeof info ? (int)info.ssi_signo : 0;
}

void pst_signalfd_close(int fd, const sigset_t *previous_mask) {
    close(fd);
    pthread_sigmask(SIG_SETMASK, previous_mask, NULL);
}

int pst_signals_ending_process(int *out, int capacity) {
    // signal(7): the signals whose default action is Term or Core, but for
    // SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV and SIGSYS: those report a
    // fault of this process's own, and blocking them would only cost the
    // crash report (the kernel delivers a fault's signal even when blocked).
    static const int fixed[] = {
        SIGHUP, SIGINT, SIGQUIT, SIGABRT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM,
        SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGIO, SIGPWR,
    };
    const int fixed_count = (int)(sizeof fixed / sizeof fixed[0]);
    const int total = fixed_count + (SIGRTMAX - SIGRTMIN + 1);
    int count = 0;
    for (int index = 0; index < total && count < capacity; index++) {
        int number = index < fixed_count ? fixed[index] : SIGRTMIN + (index - fixed_count);
        struct sigaction action;
        if (sigaction(number, NULL, &action) != 0) continue;
        // Ignored (nohup's SIGHUP): it would not end us. A handler, the only
        // other case, is the Swift runtime's crash reporter (SIGQUIT, SIGABRT),
        // which ends the process after its report.
        if ((action.sa_flags & SA_SIGINFO) || action.sa_handler != SIG_IGN) out[count++] = number;
    }
    return count;
}

int pst_terminal_disable_suspend(int fd) {
    struct termios attributes;
    if (tcgetattr(fd, &attributes) != 0) return -1;
    attributes.c_cc[VSUSP] = _POSIX_VDISABLE;
    return tcsetattr(fd, TCSANOW, &attributes);
}

int pst_malloc_trim(void) { return malloc_trim(0); }

int pst_limit_malloc_arenas(int count) { return mallopt(M_ARENA_MAX, count); }

int pst_set_current_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    return pthread_setname_np(pthread_self(), truncated);
}

int pst_rename_no_replace(int old_directory, const char *old_name, int new_directory, const char *new_name) {
    return renameat2(old_directory, old_name, new_directory, new_name, RENAME_NOREPLACE);
}
