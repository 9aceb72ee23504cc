// recordfs: the disk under the crash-point replay (Scripts/crash-test.sh).
//
//     recordfs IMAGE LOG MOUNTPOINT [FUSE options]
//
// A FUSE filesystem with two files. MOUNTPOINT/image passes reads and writes
// through to the file IMAGE; a loop device attached to it is the PST
// partition. Every write, every fsync and every discard that reaches it is
// appended to LOG, in the order it arrived, with the bytes written. Writing a
// line to MOUNTPOINT/marker appends that line to LOG as a marker: the
// workload marks there the instant a client call returned, so the log says
// which writes and flushes came before it.
//
// Why this is a faithful disk: with direct I/O off, the loop driver writes
// into the backing file with buffered writes, and FUSE (without its
// writeback cache, which is switched off below) sends each of them to us
// before the write completes. A flush request (REQ_PREFLUSH; and FUA, which
// a loop device does not offer, its queue/fua being 0, so the block layer
// follows a FUA write with a flush) becomes vfs_fsync() on the backing file,
// which FUSE sends as FSYNC. So a write logged before an fsync is on "the
// disk" after it; one logged after the last fsync may or may not be.
//
// It runs single-threaded (-s is added), so the log has one total order.
//
// Log records, all integers little-endian:
//     'W' u64 offset  u32 length  <length bytes>   a write
//     'S' u64 datasync u32 0                       an fsync (the barrier)
//     'Z' u64 offset  u32 length                   a range that now reads as zeros
//     'M' u64 0       u32 length  <length bytes>   a marker line from the workload
//     'F' u64 0       u32 0                        a flush (close(2); no barrier)

#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FALLOC_FL_PUNCH_HOLE
#include <linux/falloc.h>
#endif

static int imageFD = -1;
static int logFD = -1;

// Writes all of `size` bytes to the log, or ends the process: a log with a
// hole would make every replay after it wrong, and silently so.
static void logBytes(const void *bytes, size_t size) {
    const char *p = bytes;
    while (size > 0) {
        ssize_t n = write(logFD, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            perror("recordfs: writing the log");
            abort();
        }
        p += n;
        size -= (size_t)n;
    }
}

static void logRecord(char type, uint64_t value, const void *data, uint32_t length) {
    unsigned char header[13];
    header[0] = (unsigned char)type;
    for (int i = 0; i < 8; i++) header[1 + i] = (unsigned char)(value >> (8 * i));
    for (int i = 0; i < 4; i++) header[9 + i] = (unsigned char)(length >> (8 * i));
    logBytes(header, sizeof header);
    if (length > 0) logBytes(data, length);
}

static int isImage(const char *path) { return strcmp(path, "/image") == 0; }
static int isMarker(const char *path) { return strcmp(path, "/marker") == 0; }

static void *recordInit(struct fuse_conn_info *conn, struct fuse_config *config) {
    // The writeback cache would let the kernel hold writes back and send
    // them later, in its own order: the log would then not be what the
    // loop device asked for.
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    config->direct_io = 0;
    config->use_ino = 0;
    return NULL;
}

static int recordGetattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    if (isImage(path)) {
        struct stat backing;
        if (fstat(imageFD, &backing) != 0) return -errno;
        st->st_mode = S_IFREG | 0600;
        st->st_nlink = 1;
        st->st_size = backing.st_size;
        st->st_blocks = backing.st_blocks;
        return 0;
    }
    if (isMarker(path)) {
        st->st_mode = S_IFREG | 0200;
        st->st_nlink = 1;
        return 0;
    }
    return -ENOENT;
}

static int recordReaddir(const char *path, void *buffer, fuse_fill_dir_t fill, off_t offset,
                         struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)offset;
    (void)fi;
    (void)flags;
    if (strcmp(path, "/") != 0) return -ENOENT;
    fill(buffer, ".", NULL, 0, 0);
    fill(buffer, "..", NULL, 0, 0);
    fill(buffer, "image", NULL, 0, 0);
    fill(buffer, "marker", NULL, 0, 0);
    return 0;
}

static int recordOpen(const char *path, struct fuse_file_info *fi) {
    if (isImage(path)) return 0;
    if (isMarker(path)) return (fi->flags & O_ACCMODE) == O_RDONLY ? -EACCES : 0;
    return -ENOENT;
}

static int recordTruncate(const char *path, off_t size, struct fuse_file_info *fi) {
    (void)fi;
    if (isMarker(path)) return 0;  // `echo x > marker` truncates first
    if (!isImage(path)) return -ENOENT;
    struct stat backing;
    if (fstat(imageFD, &backing) != 0) return -errno;
    // The image has a fixed size: the replay starts from a copy of it.
    return size == backing.st_size ? 0 : -EPERM;
}

static int recordRead(const char *path, char *buffer, size_t size, off_t offset,
                      struct fuse_file_info *fi) {
    (void)fi;
    if (!isImage(path)) return -EACCES;
    ssize_t n = pread(imageFD, buffer, size, offset);
    return n < 0 ? -errno : (int)n;
}

static int recordWrite(const char *path, const char *buffer, size_t size, off_t offset,
                       struct fuse_file_info *fi) {
    (void)fi;
    if (isMarker(path)) {
        logRecord('M', 0, buffer, (uint32_t)size);
        return (int)size;
    }
    if (!isImage(path)) return -ENOENT;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(imageFD, buffer + done, size - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    logRecord('W', (uint64_t)offset, buffer, (uint32_t)size);
    return (int)size;
}

static int recordFsync(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)fi;
    if (!isImage(path)) return 0;
    // The backing file is in tmpfs; its own fsync changes nothing, but the
    // call is what a real disk's cache flush is.
    if ((datasync ? fdatasync(imageFD) : fsync(imageFD)) != 0) return -errno;
    logRecord('S', (uint64_t)datasync, NULL, 0);
    return 0;
}

static int recordFlush(const char *path, struct fuse_file_info *fi) {
    (void)fi;
    if (isImage(path)) logRecord('F', 0, NULL, 0);
    return 0;
}

static int recordFallocate(const char *path, int mode, off_t offset, off_t length,
                           struct fuse_file_info *fi) {
    (void)fi;
    if (!isImage(path)) return -EOPNOTSUPP;
    // Discards and write-zeroes from the loop device: after them the range
    // reads as zeros, which is what the replay writes.
    if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) return -EOPNOTSUPP;
    if (fallocate(imageFD, mode, offset, length) != 0) return -errno;
    logRecord('Z', (uint64_t)offset, NULL, (uint32_t)length);
    return 0;
}

static const struct fuse_operations operations = {
    .init = recordInit,
    .getattr = recordGetattr,
    .readdir = recordReaddir,
    .open = recordOpen,
    .truncate = recordTruncate,
    .read = recordRead,
    .write = recordWrite,
    .fsync = recordFsync,
    .flush = recordFlush,
    .fallocate = recordFallocate,
};

int main(int argc, char *argv[]) {
    if (argc < 4) {
        fprintf(stderr, "usage: recordfs IMAGE LOG MOUNTPOINT [FUSE options]\n");
        return 2;
    }
    imageFD = open(argv[1], O_RDWR | O_CLOEXEC);
    if (imageFD < 0) {
        fprintf(stderr, "recordfs: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    logFD = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (logFD < 0) {
        fprintf(stderr, "recordfs: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    // fuse_main gets: the program name, the mount point, -s (one thread:
    // one order) and whatever options follow.
    char **fuseArguments = calloc((size_t)argc + 2, sizeof *fuseArguments);
    if (fuseArguments == NULL) return 1;
    int count = 0;
    fuseArguments[count++] = argv[0];
    fuseArguments[count++] = argv[3];
    fuseArguments[count++] = "-s";
    for (int i = 4; i < argc; i++) fuseArguments[count++] = argv[i];
    int status = fuse_main(count, fuseArguments, &operations, NULL);
    free(fuseArguments);
    return status;
}
