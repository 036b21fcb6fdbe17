/* `kbox image`: build/list/inspect/rm root filesystem images (delegated to mkrootfs), and the
   lookup of an image plus the kbox layer for `kbox run`. */
#include "cmd/image.h"

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
#include "util/cleanup.h"
#include "util/paths.h"
#include "util/parse.h"
#include "util/log.h"

void kbox_images_dir(char *out, size_t n) {
  const char *env = getenv("KBOX_IMAGES_DIR");
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  if (env != NULL && env[0] == '/') snprintf(out, n, "%s", env);
  else if (geteuid() == 0) snprintf(out, n, "/var/lib/kbox/rootfs");
  else if (xdg != NULL && xdg[0] == '/') snprintf(out, n, "%s/kbox/rootfs", xdg);
  else snprintf(out, n, "%s/.local/share/kbox/rootfs", home != NULL ? home : "");
}

/* Path of a kbox data file: SOURCE_REL under the source tree or INSTALLED_REL under the data dir. */
static void data_path(const char *source_rel, const char *installed_rel, char *out, size_t n) {
  if (kbox_running_from_source_tree()) snprintf(out, n, "%s/%s", KBOX_SOURCE_ROOT, source_rel);
  else snprintf(out, n, "%s/%s", KBOX_DATADIR, installed_rel);
}

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int kbox_image_add_layers(const char *name, struct kbox_strv *rootfs, kbox_error_t *err) {
  if (kbox_validate_id("--image", name, err) < 0) return -1;
  char dir[PATH_MAX - 64], image[PATH_MAX], layer[PATH_MAX];
  kbox_images_dir(dir, sizeof(dir));
  snprintf(image, sizeof(image), "%s/%s", dir, name);
  if (!is_dir(image))
    return kbox_error_make(err, 0,
                           "image '%s' not found at %s; build it with: kbox image build %s (Debian trixie via "
                           "mmdebstrap: a few minutes, about 1.1 GB), or pass --rootfs DIR",
                           name, image, name);
  data_path("rootfs/layer", "layer", layer, sizeof(layer));
  if (!is_dir(layer))
    return kbox_error_make(err, 0, "the kbox layer is missing at %s; reinstall kbox (meson install)", layer);
  kbox_strv_add(rootfs, image);
  kbox_strv_add(rootfs, layer);
  return 0;
}

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
  data_path("rootfs/packages.txt", "packages.txt", packages, sizeof(packages));
  builder_path(tool, sizeof(tool));
  cleanup_free char **args = calloc((size_t)argc + 6, sizeof(char *));
  if (args == NULL) abort();
  char *fixed[] = {tool, "--images-dir", dir, "--default-packages", packages};
  size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
  memcpy(args, fixed, sizeof(fixed));
  for (int i = 1; i < argc; i++) args[nfixed + (size_t)i - 1] = argv[i];
  execv(tool, args);
  kbox_log(KBOX_LOG_ERROR, "cannot run the image builder %s: %s (reinstall kbox)", tool, strerror(errno));
  return KBOX_EXIT_RUNTIME;
}
