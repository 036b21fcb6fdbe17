/* Where kbox's own data files are: the source tree for a development build, else the data dir. */
#ifndef KBOX_PATHS_H
#define KBOX_PATHS_H

#include <stdbool.h>

/* True when this kbox binary lives below the source tree it was configured from or below the
   build directory of that configuration (meson setup /tmp/b: an out-of-tree build), so data
   files (profiles, the kbox layer, rootfs/mkrootfs) are read from the source tree. */
bool kbox_running_from_source_tree(void);
/* The rule behind it, for any paths: is exe below source_root or below build_root? */
bool kbox_is_dev_binary(const char *exe, const char *source_root, const char *build_root);

#endif
