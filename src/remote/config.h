/* Configuration of `kbox entrypoint`: the variables Enterprise Gateway and jupyter-kernel-controller
   set in a kernel pod, and the equivalent command-line options (CLI wins over the environment). */
#ifndef KBOX_REMOTE_CONFIG_H
#define KBOX_REMOTE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "util/error.h"

enum kbox_remote_mode { KBOX_REMOTE_NONE, KBOX_REMOTE_EG, KBOX_REMOTE_CONTROLLER };

/* Channel order used by ports[]: shell, iopub, stdin, control, hb. */
enum { KBOX_PORT_SHELL, KBOX_PORT_IOPUB, KBOX_PORT_STDIN, KBOX_PORT_CONTROL, KBOX_PORT_HB, KBOX_N_PORTS };
extern const char *const kbox_remote_port_names[KBOX_N_PORTS];

/* Every setting, read first as raw text (from the environment, then the command line). */
enum kbox_remote_setting {
  KBOX_RS_KERNEL_ID, KBOX_RS_LANGUAGE, KBOX_RS_RESPONSE_ADDRESS, KBOX_RS_PUBLIC_KEY, KBOX_RS_PORT_RANGE,
  KBOX_RS_MIN_RANGE, KBOX_RS_MAX_RETRIES, KBOX_RS_SHELL_PORT, KBOX_RS_IOPUB_PORT, KBOX_RS_STDIN_PORT,
  KBOX_RS_CONTROL_PORT, KBOX_RS_HB_PORT, KBOX_RS_KEY, KBOX_RS_KEY_FILE, KBOX_RS_IDLE_TIMEOUT,
  KBOX_RS_WORKING_DIR, KBOX_RS_USERNAME, KBOX_RS_REQUIRE, KBOX_RS_STATUS_FILE, KBOX_RS_ROOTFS, KBOX_RS_PROFILE,
  KBOX_RS_EG_RESPOND,
  KBOX_RS_IGNORED, /* launcher options kbox accepts and does not need (spark mode, class name) */
  KBOX_RS_COUNT
};

struct kbox_remote_config {
  char *raw[KBOX_RS_COUNT];        /* text as given */
  const char *raw_from[KBOX_RS_COUNT]; /* the variable or option it came from, for messages */
  enum kbox_remote_mode mode;
  char *kernel_id;
  char *language;          /* KERNEL_LANGUAGE, default python */
  char *response_address;  /* EG: host:port */
  char *public_key;        /* EG: base64 DER RSA public key */
  unsigned port_lo, port_hi; /* 0..0 = any free port */
  uint64_t min_range_size; /* MIN_PORT_RANGE_SIZE, default 1000 */
  uint64_t max_retries;    /* MAX_PORT_RANGE_RETRIES, default 5 */
  unsigned ports[KBOX_N_PORTS]; /* controller: fixed ports */
  char *key;               /* HMAC key (controller: KERNEL_KEY / file / KERNEL_ID) */
  char *key_file;
  bool key_is_kernel_id;   /* the compatibility fallback was taken */
  uint64_t idle_timeout_s; /* 0 = never cull */
  char *working_dir;
  char *username;
  char *require;           /* KBOX_REQUIRE, comma-separated protection names */
  char *status_file;       /* where the active/missing protections are written, NULL = none */
  char *rootfs;            /* lower layer of the nested sandbox, NULL = kbox run's default */
  char *profile;           /* security profile of the nested sandbox, NULL = default */
  bool respond_when_ready; /* EG: send the connection info once the kernel answers, not once it listens */
  int verbosity;
};

void kbox_remote_config_init(struct kbox_remote_config *c);
void kbox_remote_config_free(struct kbox_remote_config *c);
/* Read the environment (process env via getenv). */
int kbox_remote_config_from_env(struct kbox_remote_config *c, kbox_error_t *err);
/* Apply command-line options (argv[0] is the verb); *help set when --help was given. */
int kbox_remote_config_parse_args(struct kbox_remote_config *c, int argc, char **argv, bool *help,
                                  kbox_error_t *err);
/* Decide the mode, apply defaults, read the key file and check everything; messages name the
   variable at fault. */
int kbox_remote_config_finish(struct kbox_remote_config *c, kbox_error_t *err);
void kbox_remote_config_help(FILE *out);

#endif
