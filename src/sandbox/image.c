/* Root filesystem images: where they live and the kbox layer stacked above them. */
#include "sandbox/image.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util/parse.h"
#include "util/paths.h"

void kbox_images_dir(char *out, size_t n) {
  const char *env = getenv("KBOX_IMAGES_DIR");
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  if (env != NULL && env[0] == '/') snprintf(out, n, "%s", env);
  else if (geteuid() == 0) snprintf(out, n, "/var/lib/kbox/rootfs");
  else if (xdg != NULL && xdg[0] == '/') snprintf(out, n, "%s/kbox/rootfs", xdg);
  else snprintf(out, n, "%s/.local/share/kbox/rootfs", home != NULL ? home : "");
}

void kbox_image_data_path(const char *source_rel, const char *installed_rel, char *out, size_t n) {
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
  kbox_image_data_path("rootfs/layer", "layer", layer, sizeof(layer));
  if (!is_dir(layer))
    return kbox_error_make(err, 0, "the kbox layer is missing at %s; reinstall kbox (meson install)", layer);
  kbox_strv_add(rootfs, image);
  kbox_strv_add(rootfs, layer);
  return 0;
}

