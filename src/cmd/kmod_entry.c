/* The entry table of kbox-kernel.so (see cmd/kmod.h). */
#include "cmd/commands.h"
#include "cmd/kmod.h"
#include "config.h"

extern const struct kbox_kmod kbox_kmod_entry;

__attribute__((visibility("default"))) const struct kbox_kmod kbox_kmod_entry = {
    .version = KBOX_VERSION,
    .size = sizeof(struct kbox_kmod),
    .run_kernel = kbox_cmd_run_kernel,
    .exec = kbox_cmd_exec,
    .ps = kbox_cmd_ps,
    .inspect = kbox_cmd_inspect,
    .interrupt = kbox_cmd_interrupt,
    .kill = kbox_cmd_kill,
    .entrypoint = kbox_cmd_entrypoint,
};
