/* `kbox image`: build/list/inspect/rm root filesystem images (delegated to mkrootfs); the lookup
   of an image for `kbox run` is sandbox/image.c. */
#include "sandbox/image.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "config.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/paths.h"
#include "util/parse.h"
#include "util/log.h"

static void image_usage(FILE *out) {
  fprintf(out,
          "Usage: kbox image VERB [ARGS...]\n"
          "Build and manage the root filesystem images kbox runs kernels in (Debian trixie, mmdebstrap).\n\n"
          "Verbs:\n"
          "  build [NAME] [--force] [--add PKG]   build NAME (default 'default'); kept when up to date\n"
          "  list                                  images, build date, size, recipe hash\n"
          "  inspect [NAME] [--json]               manifest: package versions, build date, recipe hash\n"
          "  rm NAME                               delete an image\n"
          "  path [NAME]                           print the image's directory\n"
          "  dir                                   print the directory holding the images\n\n"
          "Images live in $KBOX_IMAGES_DIR, else /var/lib/kbox/rootfs (root) or ~/.local/share/kbox/rootfs.\n"
          "Use one with: kbox run --image NAME -- CMD (without --image/--rootfs: the 'default' image).\n"
          "Example: kbox image build && kbox image inspect default\n");
}

/* Path of the image builder: rootfs/mkrootfs in the source tree for a development build, else the
   installed copy in the libexec dir. */
static void builder_path(char *out, size_t n) {
  if (kbox_running_from_source_tree()) snprintf(out, n, "%s/rootfs/mkrootfs", KBOX_SOURCE_ROOT);
  else snprintf(out, n, "%s/mkrootfs", KBOX_LIBEXECDIR);
}

int kbox_cmd_image(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    image_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? KBOX_EXIT_RUNTIME : 0;
  }
  char dir[PATH_MAX], packages[PATH_MAX], tool[PATH_MAX];
  kbox_images_dir(dir, sizeof(dir));
  if (strcmp(argv[1], "dir") == 0 && argc == 2) {
    printf("%s\n", dir);
    return 0;
  }
  /* The builder gets the images directory (the rule lives only here) and the recipe (installed, it
     lives in the libexec dir, the recipe in the data dir). */
  kbox_image_data_path("rootfs/packages.txt", "packages.txt", packages, sizeof(packages));
  builder_path(tool, sizeof(tool));
  cleanup_free char **args = xcalloc((size_t)argc + 6, sizeof(char *));
  char *fixed[] = {tool, "--images-dir", dir, "--default-packages", packages};
  size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
  memcpy(args, fixed, sizeof(fixed));
  for (int i = 1; i < argc; i++) args[nfixed + (size_t)i - 1] = argv[i];
  execv(tool, args);
  kbox_log(KBOX_LOG_ERROR, "cannot run the image builder %s: %s (reinstall kbox)", tool, strerror(errno));
  return KBOX_EXIT_RUNTIME;
}
