/* Jupyter connection files: the five channel ports, address, transport and signing key. */
#ifndef KBOX_KERNEL_CONNECTION_H
#define KBOX_KERNEL_CONNECTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

enum kbox_channel { KBOX_CH_SHELL, KBOX_CH_IOPUB, KBOX_CH_STDIN, KBOX_CH_CONTROL, KBOX_CH_HB, KBOX_CH_N };

/* "shell", "iopub", "stdin", "control", "hb". */
extern const char *const kbox_channel_names[KBOX_CH_N];

struct kbox_conn {
  char transport[8];       /* "tcp" or "ipc" */
  char ip[256];            /* tcp: address; ipc: socket path prefix */
  unsigned port[KBOX_CH_N];
  char key[256];           /* HMAC key ("" = unsigned) */
  char scheme[32];         /* "hmac-sha256" */
  char kernel_name[64];
  unsigned long long max_message; /* the broker's --max-message ("kbox_max_message"; 0 = not known) */
};

/* Defaults: tcp, 127.0.0.1, ports 0 (to be chosen), hmac-sha256, empty key. */
void kbox_conn_init(struct kbox_conn *c);
/* A fresh random key (UUID-like hex, as Jupyter writes them). */
int kbox_conn_new_key(struct kbox_conn *c, kbox_error_t *err);
/* Parse a connection file; missing fields keep their defaults. */
int kbox_conn_read(const char *path, struct kbox_conn *c, kbox_error_t *err);
int kbox_conn_from_json(json_t *j, struct kbox_conn *c, const char *what, kbox_error_t *err);
/* A connection file that gives no key (or an empty one) leaves the kernel open to anyone who can
   reach its ports: an error naming the file and the fix, unless insecure (then one warning). */
int kbox_conn_check_key(const struct kbox_conn *c, const char *path, bool insecure, kbox_error_t *err);
/* The standard fields (plus kernel_id when not NULL). */
json_t *kbox_conn_to_json(const struct kbox_conn *c, const char *kernel_id);
/* Write the file with mode 0600 (O_EXCL when exclusive: fails if it exists). */
int kbox_conn_write(const char *path, const struct kbox_conn *c, const char *kernel_id, bool exclusive,
                    kbox_error_t *err);
/* tcp: every port given (non-zero) is distinct and free to listen on at ip now; the error names the
   channel, port, address and `what` (the connection file). */
int kbox_conn_check_ports(const struct kbox_conn *c, const char *what, kbox_error_t *err);
/* ZMQ endpoint of a channel: tcp://IP:PORT or ipc://IP-PORT. */
void kbox_conn_endpoint(const struct kbox_conn *c, enum kbox_channel ch, char *buf, size_t n);

#endif
