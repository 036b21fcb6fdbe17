/* Options shared by `kbox run`, `kbox exec` and `kbox entrypoint`: parsing into a spec and help. */
#ifndef KBOX_RUN_OPTS_H
#define KBOX_RUN_OPTS_H

#include <stdio.h>
#include "spec/spec.h"

/* Parse argv (argv[0] is the verb) into spec; stops at "--" or the first non-option and stores the
   rest as the workload command. Returns 0, or -1 with err set; *help_shown set when --help ran. */
int kbox_run_opts_parse(int argc, char **argv, struct kbox_spec *spec, bool *help_shown, kbox_error_t *err);
/* Apply defaults that depend on the environment (id, hostname, rootfs) and validate. */
int kbox_run_opts_finish(struct kbox_spec *spec, kbox_error_t *err);
void kbox_run_opts_help(FILE *out);
/* Typed setters behind the options that check or resolve their value, for a verb that builds its
   spec from another configuration (the entrypoint): --rootfs DIR, --workdir DIR, --id ID. */
int kbox_run_opts_add_rootfs(struct kbox_spec *spec, const char *dir, kbox_error_t *err);
int kbox_run_opts_set_workdir(struct kbox_spec *spec, const char *dir, kbox_error_t *err);
int kbox_run_opts_set_id(struct kbox_spec *spec, const char *id, kbox_error_t *err);
/* 1 if run option --name takes a value, 0 if not, -1 if there is no such option (for kbox exec). */
int kbox_run_opts_takes_arg(const char *name);

#endif
