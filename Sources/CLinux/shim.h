// Linux calls that Swift's Glibc module does not import: extended attributes, syncfs, statfs, sync_file_range,
// mallopt.
#include <malloc.h>
#include <sys/xattr.h>
#include <sys/vfs.h>
int syncfs(int fd);
// Starts the writeback of a file's dirty pages without waiting for it (fcntl.h declares it for _GNU_SOURCE only).
int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags);
#define DICOM_ETL_SYNC_FILE_RANGE_WRITE 2
