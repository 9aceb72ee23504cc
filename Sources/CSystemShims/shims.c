#define _GNU_SOURCE
#include <sys/socket.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
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

int pst_wait_for_exit_keeping_zombie(pid_t pid) {
    siginfo_t info;
    int result;
    do {
        result = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT);
    } while (result != 0 && errno == EINTR);
    return result;
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
