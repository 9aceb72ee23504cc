#ifndef SWIFT_PST_CSYSTEMSHIMS_H
#define SWIFT_PST_CSYSTEMSHIMS_H

#include <signal.h>
#include <sys/types.h>

/// The kernel's credentials of the process at the other end of a Unix socket,
/// as recorded when it connected (SO_PEERCRED). Glibc only declares
/// `struct ucred` under _GNU_SOURCE, which Swift's Glibc module does not set.
typedef struct {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} pst_peer_credentials;

/// Fills `out` with the peer's credentials. Returns 0, or -1 with errno set.
int pst_get_peer_credentials(int fd, pst_peer_credentials *out);

/// The size of the kernel's `struct ucred`, to check layouts match.
unsigned long pst_ucred_size(void);

/// syncfs(2): flush one filesystem. Glibc declares it only under _GNU_SOURCE.
int pst_syncfs(int fd);

/// Starts `file` (searched in PATH like execvp) in a new process group of its
/// own, with every signal back at its default action and none blocked, so
/// that what the caller ignores or blocks for itself does not leak into the
/// child. Only stdin, stdout and stderr are inherited. If `terminal_fd` is not -1, the new group becomes the foreground
/// group of that terminal before the program starts, so it can read the
/// keyboard from its first instruction (there is no window in which it would
/// be stopped by SIGTTIN). Returns 0, or an errno value (ENOENT, EACCES, ...)
/// if the program could not be started.
int pst_spawn_in_new_process_group(pid_t *pid, const char *file, char *const argv[],
                                   char *const envp[], int terminal_fd);

/// `posix_spawn_file_actions_addclosefrom_np(actions, lowest_fd)`, which
/// Glibc does not export to Swift: the child closes every descriptor from
/// `lowest_fd` up. `actions` is a `posix_spawn_file_actions_t *`.
int pst_spawn_file_actions_close_from(void *actions, int lowest_fd);

/// Whether the child `pid` has exited, without waiting and without reaping
/// it: it stays a zombie, so its pid (and therefore its process-group id)
/// cannot be reused before the caller reaps it. Returns 1 if it has exited,
/// 0 if not, or -1 with errno set.
int pst_has_exited_keeping_zombie(pid_t pid);

/// Blocks `count` signals in the calling thread and returns a non-blocking,
/// close-on-exec signalfd(2) that reads them instead, or -1 with errno set.
/// The mask in force before is saved in `previous_mask`. <sys/signalfd.h>
/// is not part of Swift's Glibc module.
int pst_signalfd_open(const int *signals, int count, sigset_t *previous_mask);

/// The number of the next signal pending on a descriptor from
/// pst_signalfd_open, 0 if none is, or -1 with errno set.
int pst_signalfd_next(int fd);

/// Closes a descriptor from pst_signalfd_open and puts the signal mask saved
/// by it back. Signals still pending then take their actions.
void pst_signalfd_close(int fd, const sigset_t *previous_mask);

/// Fills `out` with the signals that would end the calling process now if
/// another process sent them: those whose default action is to terminate it
/// (with or without a core dump), the real-time ones included, and that are
/// not ignored. SIGKILL and SIGSTOP, which cannot be caught, and the signals
/// of a process's own faults (SIGSEGV, ...) are not among them. Returns how
/// many were written (at most `capacity`). The real-time range (SIGRTMIN,
/// SIGRTMAX) is a glibc function, not a constant, so Swift cannot spell it.
int pst_signals_ending_process(int *out, int capacity);

/// Turns off the terminal's suspend character (^Z), leaving everything else.
/// Returns 0, or -1 with errno set.
int pst_terminal_disable_suspend(int fd);

/// malloc_trim(3): give freed heap back to the kernel. Returns 1 if any was.
/// <malloc.h> is not part of Swift's Glibc module.
int pst_malloc_trim(void);

/// mallopt(M_ARENA_MAX, count): cap glibc's per-thread malloc arenas.
/// Returns 1 on success.
int pst_limit_malloc_arenas(int count);

/// Names the calling thread (15 bytes show, in `ps -L` and /proc). Returns 0
/// or an errno value. pthread_setname_np needs _GNU_SOURCE, which Swift's
/// Glibc module does not define.
int pst_set_current_thread_name(const char *name);

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of
/// replacing whatever is at the new name. Returns 0, or -1 with errno set.
int pst_rename_no_replace(int old_directory, const char *old_name, int new_directory, const char *new_name);

#endif
