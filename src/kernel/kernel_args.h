/* Arguments a Jupyter client appends after a kernelspec's argv (jupyter_client's extra_arguments):
   which reach the kernel, which are mapped (--profile-dir, --ipython-dir) and which are refused. */
#ifndef KBOX_KERNEL_ARGS_H
#define KBOX_KERNEL_ARGS_H

#include "spec/spec.h"

/* Check spec->kernel.args and rewrite them for the kernel: --profile-dir/--ipython-dir DIR become
   --profile-dir=REAL with REAL added to spec->sandbox.overlays; --Class.trait=value and IPKernelApp flags
   pass unchanged. An argument that would weaken the sandbox or cannot be honoured is an error
   naming it (is_run_option: true for a kbox run option name, to say where it belongs). Call once every run option is known (the workdir and binds decide which host
   paths the kernel can see). */
int kbox_kernel_args_check(struct kbox_spec *spec, bool (*is_run_option)(const char *name), kbox_error_t *err);

#endif
