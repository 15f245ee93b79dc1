// Linux calls that Swift's Glibc module does not import: extended attributes, syncfs, statfs.
#include <sys/xattr.h>
#include <sys/vfs.h>
int syncfs(int fd);
