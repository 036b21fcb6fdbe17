#include "kernel/connection.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/log.h"
#include "util/fs.h"
#include "util/parse.h"

const char *const kbox_channel_names[KBOX_CH_N] = {"shell", "iopub", "stdin", "control", "hb"};

void kbox_conn_init(struct kbox_conn *c) {
  memset(c, 0, sizeof(*c));
  snprintf(c->transport, sizeof(c->transport), "tcp");
  snprintf(c->ip, sizeof(c->ip), "127.0.0.1");
  snprintf(c->scheme, sizeof(c->scheme), "hmac-sha256");
}

int kbox_conn_new_key(struct kbox_conn *c, kbox_error_t *err) {
  char hex[33];
  if (kbox_random_hex(hex, 16, err) < 0) return -1;
  snprintf(c->key, sizeof(c->key), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
  return 0;
}

/* Copy a string field if present; error when it has the wrong type or does not fit. */
static int get_str(json_t *j, const char *name, char *out, size_t n, const char *what, kbox_error_t *err) {
  json_t *v = json_object_get(j, name);
  if (v == NULL || json_is_null(v)) return 0;
  if (!json_is_string(v)) return kbox_error_make(err, 0, "%s: \"%s\" must be a string", what, name);
  if (json_string_length(v) >= n) return kbox_error_make(err, 0, "%s: \"%s\" is too long", what, name);
  snprintf(out, n, "%s", json_string_value(v));
  return 0;
}

int kbox_conn_from_json(json_t *j, struct kbox_conn *c, const char *what, kbox_error_t *err) {
  if (!json_is_object(j)) return kbox_error_make(err, 0, "%s: not a JSON object", what);
  if (get_str(j, "transport", c->transport, sizeof(c->transport), what, err) < 0 ||
      get_str(j, "ip", c->ip, sizeof(c->ip), what, err) < 0 ||
      get_str(j, "key", c->key, sizeof(c->key), what, err) < 0 ||
      get_str(j, "signature_scheme", c->scheme, sizeof(c->scheme), what, err) < 0 ||
      get_str(j, "kernel_name", c->kernel_name, sizeof(c->kernel_name), what, err) < 0)
    return -1;
  if (strcmp(c->transport, "tcp") != 0 && strcmp(c->transport, "ipc") != 0)
    return kbox_error_make(err, 0, "%s: transport \"%s\" is not supported (use tcp or ipc)", what, c->transport);
  if (strcmp(c->transport, "tcp") == 0 && kbox_validate_ip("\"ip\"", c->ip, err) < 0) return kbox_error_prefix(err, "%s", what);
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    char name[32];
    snprintf(name, sizeof(name), "%s_port", kbox_channel_names[ch]);
    json_t *v = json_object_get(j, name);
    if (v == NULL || json_is_null(v)) continue;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
      return kbox_error_make(err, 0, "%s: \"%s\" must be an integer from 0 to 65535", what, name);
    c->port[ch] = (unsigned)json_integer_value(v);
  }
  json_t *mm = json_object_get(j, "kbox_max_message");
  if (json_is_integer(mm) && json_integer_value(mm) > 0) c->max_message = (unsigned long long)json_integer_value(mm);
  return 0;
}

int kbox_conn_check_key(const struct kbox_conn *c, const char *path, bool insecure, kbox_error_t *err) {
  if (c->key[0] != '\0') return 0;
  if (!insecure)
    return kbox_error_make(err, 0, "connection file %s has no \"key\" (or an empty one): the kernel would run code for anyone "
                           "who reaches its ports; add a random \"key\" to the file, or pass --insecure-no-key if that is "
                           "really wanted", path);
  kbox_log(KBOX_LOG_WARN, "connection file %s has no key and --insecure-no-key was given: messages are not signed, anyone "
           "who can reach the kernel's ports can run code in it", path);
  return 0;
}

int kbox_conn_read(const char *path, struct kbox_conn *c, kbox_error_t *err) {
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (kbox_read_file(path, 1 << 20, &text, &len, err) < 0) return kbox_error_prefix(err, "connection file");
  json_error_t jerr;
  json_t *j = json_loadb(text, len, 0, &jerr);
  if (j == NULL) return kbox_error_make(err, 0, "connection file %s: invalid JSON (line %d: %s)", path, jerr.line, jerr.text);
  int rc = kbox_conn_from_json(j, c, path, err);
  json_decref(j);
  return rc;
}

json_t *kbox_conn_to_json(const struct kbox_conn *c, const char *kernel_id) {
  json_t *j = json_object();
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    char name[32];
    snprintf(name, sizeof(name), "%s_port", kbox_channel_names[ch]);
    json_object_set_new(j, name, json_integer(c->port[ch]));
  }
  json_object_set_new(j, "ip", json_string(c->ip));
  json_object_set_new(j, "key", json_string(c->key));
  json_object_set_new(j, "transport", json_string(c->transport));
  json_object_set_new(j, "signature_scheme", json_string(c->scheme));
  json_object_set_new(j, "kernel_name", json_string(c->kernel_name));
  if (kernel_id != NULL) json_object_set_new(j, "kernel_id", json_string(kernel_id));
  if (c->max_message != 0) json_object_set_new(j, "kbox_max_message", json_integer((json_int_t)c->max_message));
  return j;
}

int kbox_conn_write(const char *path, const struct kbox_conn *c, const char *kernel_id, bool exclusive,
                    kbox_error_t *err) {
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (exclusive ? O_EXCL : O_TRUNC), 0600);
  if (fd < 0) return kbox_error_make(err, errno, "cannot create connection file %s", path);
  if (fchmod(fd, 0600) < 0) return kbox_error_make(err, errno, "chmod 0600 %s", path);
  json_t *j = kbox_conn_to_json(c, kernel_id);
  int rc = json_dumpfd(j, fd, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(j);
  if (rc < 0 || write(fd, "\n", 1) != 1) return kbox_error_make(err, errno, "writing connection file %s", path);
  if (close(steal_fd(fd)) < 0) return kbox_error_make(err, errno, "writing connection file %s", path);
  return 0;
}

/* Can a listener bind ip:port now? errno of the failure otherwise. */
static int try_bind(const char *ip, unsigned port) {
  struct sockaddr_storage ss = {0};
  socklen_t len;
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    len = sizeof(*in4);
  } else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    len = sizeof(*in6);
  } else {
    return EINVAL;
  }
  cleanup_close int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0) return errno;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* as libzmq's listener does */
  return bind(fd, (struct sockaddr *)&ss, len) == 0 ? 0 : errno;
}

int kbox_conn_check_ports(const struct kbox_conn *c, const char *what, kbox_error_t *err) {
  if (strcmp(c->transport, "tcp") != 0) return 0;
  for (int ch = 0; ch < KBOX_CH_N; ch++)
    for (int o = 0; o < ch; o++)
      if (c->port[ch] != 0 && c->port[o] == c->port[ch])
        return kbox_error_make(err, 0, "%s: %s_port and %s_port are both %u (each channel needs its own port)", what,
                               kbox_channel_names[o], kbox_channel_names[ch], c->port[ch]);
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    if (c->port[ch] == 0) continue;
    int e = try_bind(c->ip, c->port[ch]);
    if (e == EADDRINUSE)
      return kbox_error_make(err, 0, "%s: %s_port %u on %s is already in use (another kernel still running with this "
                             "file?); free the port or remove the file so that kbox picks free ports", what,
                             kbox_channel_names[ch], c->port[ch], c->ip);
    if (e != 0) return kbox_error_make(err, e, "%s: cannot listen on %s_port %u of %s", what, kbox_channel_names[ch], c->port[ch], c->ip);
  }
  return 0;
}

void kbox_conn_endpoint(const struct kbox_conn *c, enum kbox_channel ch, char *buf, size_t n) {
  if (strcmp(c->transport, "ipc") == 0) snprintf(buf, n, "ipc://%s-%u", c->ip, c->port[ch]);
  else if (strchr(c->ip, ':') != NULL) snprintf(buf, n, "tcp://[%s]:%u", c->ip, c->port[ch]);
  else snprintf(buf, n, "tcp://%s:%u", c->ip, c->port[ch]);
}
