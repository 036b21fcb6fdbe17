/* dotenv-format files: KEY=VALUE lines, '#' comments, optional "export ", quoted values. */
#ifndef KBOX_ENVFILE_H
#define KBOX_ENVFILE_H

#include "util/error.h"
#include "util/strv.h"

/* Parse one "KEY=VALUE" argument (as given to --env) into env. */
int kbox_env_parse_assignment(const char *opt, const char *arg, struct kbox_strv *env, kbox_error_t *err);
/* Parse the text of a dotenv file; `name` is used in error messages ("FILE:LINE: ..."). */
int kbox_envfile_parse(const char *name, const char *text, struct kbox_strv *env, kbox_error_t *err);
/* Largest env file read. */
#define KBOX_ENVFILE_MAX (1u << 20)
/* Read and parse a dotenv file: a regular text file (no NUL byte) of at most KBOX_ENVFILE_MAX bytes. */
int kbox_envfile_load(const char *path, struct kbox_strv *env, kbox_error_t *err);

#endif
