#ifndef SWIFT_PST_CSYSTEMSHIMS_H
#define SWIFT_PST_CSYSTEMSHIMS_H

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

#endif
