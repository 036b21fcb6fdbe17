/* Where kbox's own data files are: the source tree for a development build, else the data dir. */
#ifndef KBOX_PATHS_H
#define KBOX_PATHS_H

#include <stdbool.h>

/* True when this kbox binary lives below the source tree it was configured from (a build
   directory), so data files (profiles, the kbox layer, mkrootfs) are read from there. */
bool kbox_running_from_source_tree(void);

#endif
