#define _GNU_SOURCE
#include <sys/socket.h>
#include <errno.h>
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
