/* Where zygotes live and how they are found: one per start-up key (see docs/warm.md), each run by a
   `kbox warm serve` process in the background with its socket in KEYDIR (under the runtime dir, or
   $KBOX_WARM_DIR). */
#ifndef KBOX_WARM_SERVICE_H
#define KBOX_WARM_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "spec/spec.h"
#include "util/error.h"

/* The base directory of all keys (created 0700). */
int kbox_warm_base(char *out, size_t n, kbox_error_t *err);
/* The key of the zygote that can serve spec (kbox binary and library identity, layers) and its
   directory BASE/KEY. Fails when a part is missing (e.g. no zygote entry in the layers). */
int kbox_warm_key_dir(const struct kbox_spec *spec, char *out, size_t n, kbox_error_t *err);
/* Path of libkbox-warm.so next to the running kbox (build tree) or in the installed libdir. */
int kbox_warm_lib_path(char *out, size_t n, kbox_error_t *err);
/* Start `kbox warm serve` for spec's layers in the background (its own session; survives us). */
int kbox_warm_spawn(const struct kbox_spec *spec, kbox_error_t *err);
/* True when the zygote of KEYDIR accepts connections (its socket exists and its server runs). */
bool kbox_warm_ready(const char *keydir);
/* True while a `kbox warm serve` for KEYDIR runs (it holds KEYDIR.lock), starting or ready. */
bool kbox_warm_serving(const char *keydir);
/* `kbox warm serve`: run the zygote sandbox for spec until it exits (idle) or SIGTERM. */
int kbox_warm_serve(struct kbox_spec *spec, kbox_error_t *err);

#endif
