/* Root filesystem images: where they live and the kbox layer stacked above them (the `image`
   verb is cmd/image.c). */
#ifndef KBOX_SANDBOX_IMAGE_H
#define KBOX_SANDBOX_IMAGE_H

#include <stddef.h>

#include "util/error.h"
#include "util/strv.h"

/* Where the sandbox sees the directory given with --startup-dir (read-only); the layer's
   /etc/ipython/ipython_config.py runs its *.py / *.ipy files after kbox's own startup scripts. */
#define KBOX_USER_STARTUP_DIR "/etc/kbox/user-startup"

/* Directory holding the images: $KBOX_IMAGES_DIR, else /var/lib/kbox/rootfs (root), else
   $XDG_DATA_HOME/kbox/rootfs or ~/.local/share/kbox/rootfs. */
void kbox_images_dir(char *out, size_t n);
/* Path of a kbox data file: SOURCE_REL under the source tree or INSTALLED_REL under the data dir. */
void kbox_image_data_path(const char *source_rel, const char *installed_rel, char *out, size_t n);
/* Append image NAME and the kbox layer above it to rootfs (bottom first). Fails, naming the
   command that builds it, when the image is missing. */
int kbox_image_add_layers(const char *name, struct kbox_strv *rootfs, kbox_error_t *err);

#endif
