#include "remote/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/parse.h"

const char *const kbox_remote_port_names[KBOX_N_PORTS] = {"shell", "iopub", "stdin", "control", "hb"};

/* Controller defaults (jupyter-kernel-controller's KERNEL_*_PORT values). */
static const unsigned default_ports[KBOX_N_PORTS] = {52317, 52318, 52321, 52320, 52319};

struct setting_doc {
  int id;
  const char *env[3];  /* variables, first one wins */
  const char *cli[3];  /* option names without "--" */
  const char *metavar;
  const char *help;
};

static const struct setting_doc settings[] = {
    {KBOX_RS_KERNEL_ID, {"KERNEL_ID"}, {"kernel-id", "RemoteProcessProxy.kernel-id"}, "ID", "kernel id (EG: required; routed on)"},
    {KBOX_RS_LANGUAGE, {"KERNEL_LANGUAGE"}, {"kernel-language"}, "LANG", "kernel language; only python is supported. Default python"},
    {KBOX_RS_RESPONSE_ADDRESS, {"RESPONSE_ADDRESS", "EG_RESPONSE_ADDRESS"}, {"response-address", "RemoteProcessProxy.response-address"}, "HOST:PORT", "EG: where to send the encrypted connection info"},
    {KBOX_RS_PUBLIC_KEY, {"PUBLIC_KEY", "EG_PUBLIC_KEY"}, {"public-key", "RemoteProcessProxy.public-key"}, "B64", "EG: the gateway's RSA public key (base64 DER)"},
    {KBOX_RS_PORT_RANGE, {"PORT_RANGE", "EG_PORT_RANGE"}, {"port-range", "RemoteProcessProxy.port-range"}, "LO..HI", "ports for the kernel's channels and the comm port; 0..0 = any. Default 0..0"},
    {KBOX_RS_MIN_RANGE, {"MIN_PORT_RANGE_SIZE", "EG_MIN_PORT_RANGE_SIZE"}, {"min-port-range-size"}, "N", "smallest accepted PORT_RANGE. Default 1000"},
    {KBOX_RS_MAX_RETRIES, {"MAX_PORT_RANGE_RETRIES", "EG_MAX_PORT_RANGE_RETRIES"}, {"max-port-range-retries"}, "N", "attempts at binding random ports in the range. Default 5"},
    {KBOX_RS_SHELL_PORT, {"KERNEL_SHELL_PORT"}, {"shell-port"}, "PORT", "controller: fixed shell port (default 52317 once any fixed port is set)"},
    {KBOX_RS_IOPUB_PORT, {"KERNEL_IOPUB_PORT"}, {"iopub-port"}, "PORT", "controller: fixed iopub port (52318)"},
    {KBOX_RS_STDIN_PORT, {"KERNEL_STDIN_PORT"}, {"stdin-port"}, "PORT", "controller: fixed stdin port (52321)"},
    {KBOX_RS_CONTROL_PORT, {"KERNEL_CONTROL_PORT"}, {"control-port"}, "PORT", "controller: fixed control port (52320)"},
    {KBOX_RS_HB_PORT, {"KERNEL_HB_PORT"}, {"hb-port"}, "PORT", "controller: fixed heartbeat port (52319)"},
    {KBOX_RS_KEY, {"KERNEL_KEY"}, {"key"}, "KEY", "controller: message signing key"},
    {KBOX_RS_KEY_FILE, {"KERNEL_KEY_FILE"}, {"key-file"}, "FILE", "controller: read the signing key from FILE (e.g. a mounted secret)"},
    {KBOX_RS_IDLE_TIMEOUT, {"KERNEL_IDLE_TIMEOUT"}, {"idle-timeout"}, "SECONDS", "exit 0 after this long without client activity. Default 0 (never)"},
    {KBOX_RS_WORKING_DIR, {"KERNEL_WORKING_DIR"}, {"working-dir"}, "DIR", "the kernel's working directory (shared read-write)"},
    {KBOX_RS_USERNAME, {"KERNEL_USERNAME"}, {"kernel-username"}, "NAME", "the user the kernel was started for (logged, reported)"},
    {KBOX_RS_REQUIRE, {"KBOX_REQUIRE"}, {"require"}, "LIST", "protections that must be active, e.g. userns,seccomp (else fail)"},
    {KBOX_RS_STATUS_FILE, {"KBOX_STATUS_FILE"}, {"status-file"}, "FILE", "write active/missing protections as JSON here. Default /tmp/kbox-status.json; empty = none"},
    {KBOX_RS_ROOTFS, {"KBOX_ROOTFS"}, {"rootfs"}, "DIR", "lower layer of the kernel's sandbox. Default as kbox run"},
    {KBOX_RS_PROFILE, {"KBOX_PROFILE"}, {"profile"}, "NAME|PATH", "security profile of the kernel's sandbox (as kbox run --profile). Default 'default'"},
    {KBOX_RS_EG_RESPOND, {"KBOX_EG_RESPOND"}, {"eg-respond"}, "WHEN", "EG: send the connection info when the kernel is 'listening' (its sockets bound; the gateway's part overlaps the kernel's start) or 'ready' (it answered kernel_info: a kernel that dies before fails the gateway's request at once). Default ready"},
    {KBOX_RS_IGNORED, {NULL}, {"RemoteProcessProxy.spark-context-initialization-mode", "spark-context-initialization-mode", "kernel-class-name"}, "X", "accepted for launcher compatibility, unused"},
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

enum { OPT_VERBOSE = 1000, OPT_HELP, OPT_SETTING = 2000 };

void kbox_remote_config_init(struct kbox_remote_config *c) {
  memset(c, 0, sizeof(*c));
  c->min_range_size = 1000;
  c->max_retries = 5;
}

void kbox_remote_config_free(struct kbox_remote_config *c) {
  for (int i = 0; i < KBOX_RS_COUNT; i++) free(c->raw[i]);
  free(c->kernel_id);
  free(c->language);
  free(c->response_address);
  free(c->public_key);
  free(c->key);
  free(c->key_file);
  free(c->working_dir);
  free(c->username);
  free(c->require);
  free(c->status_file);
  free(c->rootfs);
  free(c->profile);
  memset(c, 0, sizeof(*c));
}

static void set_raw(struct kbox_remote_config *c, int id, const char *value, const char *from) {
  free(c->raw[id]);
  c->raw[id] = xstrdup(value);
  c->raw_from[id] = from;
}

int kbox_remote_config_from_env(struct kbox_remote_config *c, kbox_error_t *err) {
  for (size_t i = 0; i < N_SETTINGS; i++) {
    for (int j = 0; j < 3 && settings[i].env[j] != NULL; j++) {
      const char *v = getenv(settings[i].env[j]);
      if (v == NULL) continue;
      set_raw(c, settings[i].id, v, settings[i].env[j]);
      break;
    }
  }
  return 0;
}

void kbox_remote_config_help(FILE *out) {
  for (size_t i = 0; i < N_SETTINGS; i++) {
    if (settings[i].id == KBOX_RS_IGNORED) continue;
    char left[64];
    snprintf(left, sizeof(left), "--%s %s", settings[i].cli[0], settings[i].metavar);
    fprintf(out, "  %-28s %s%s%s%s\n", left, settings[i].help, settings[i].env[0] ? " [env " : "",
            settings[i].env[0] ? settings[i].env[0] : "", settings[i].env[0] ? "]" : "");
  }
  fprintf(out, "  %-28s %s\n  %-28s %s\n", "--verbose", "log each step on stderr (repeat for more)", "--help", "show this help");
}

int kbox_remote_config_parse_args(struct kbox_remote_config *c, int argc, char **argv, bool *help,
                                  kbox_error_t *err) {
  struct option longopts[N_SETTINGS * 3 + 3];
  const char *names[N_SETTINGS * 3];
  size_t n = 0;
  for (size_t i = 0; i < N_SETTINGS; i++)
    for (int j = 0; j < 3 && settings[i].cli[j] != NULL; j++) {
      names[n] = settings[i].cli[j];
      longopts[n] = (struct option){settings[i].cli[j], required_argument, NULL, OPT_SETTING + (int)n};
      n++;
    }
  size_t n_names = n;
  longopts[n++] = (struct option){"verbose", no_argument, NULL, OPT_VERBOSE};
  longopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
  memset(&longopts[n], 0, sizeof(longopts[0]));
  *help = false;
  opterr = 0;
  optind = 1;
  for (;;) {
    int prev = optind;
    int o = getopt_long(argc, argv, ":hv", longopts, NULL);
    if (o == -1) break;
    if (o == ':') return kbox_error_make(err, 0, "option '%s' needs a value (see 'kbox entrypoint --help')", argv[optind - 1]);
    if (o == '?') return kbox_error_make(err, 0, "unknown option '%s' (see 'kbox entrypoint --help')", prev < argc ? argv[prev] : "?");
    if (o == 'h' || o == OPT_HELP) {
      *help = true;
      return 0;
    }
    if (o == 'v' || o == OPT_VERBOSE) {
      c->verbosity++;
      continue;
    }
    size_t k = (size_t)(o - OPT_SETTING);
    if (k >= n_names) return kbox_error_make(err, 0, "internal: option %d", o);
    for (size_t i = 0; i < N_SETTINGS; i++)
      for (int j = 0; j < 3 && settings[i].cli[j] != NULL; j++)
        if (settings[i].cli[j] == names[k]) set_raw(c, settings[i].id, optarg, settings[i].cli[j]);
  }
  if (optind < argc)
    return kbox_error_make(err, 0, "unexpected argument '%s': kbox entrypoint takes only options", argv[optind]);
  return 0;
}

/* Name of where a setting came from, for messages ("PORT_RANGE", "--port-range"). */
static const char *from(const struct kbox_remote_config *c, int id) {
  static char buf[4][96];
  static int slot;
  const char *f = c->raw_from[id];
  if (f == NULL) {
    for (size_t i = 0; i < N_SETTINGS; i++)
      if (settings[i].id == id) return settings[i].env[0] ? settings[i].env[0] : settings[i].cli[0];
    return "?";
  }
  if (isupper((unsigned char)f[0]) && strchr(f, '.') == NULL) return f;
  char *b = buf[slot++ % 4];
  snprintf(b, sizeof(buf[0]), "--%s", f);
  return b;
}

static char *dup_raw(const struct kbox_remote_config *c, int id) {
  return c->raw[id] != NULL && c->raw[id][0] != '\0' ? xstrdup(c->raw[id]) : NULL;
}

/* Fixed ports: any KERNEL_*_PORT set selects them; unset ones take the controller defaults. */
static int finish_ports(struct kbox_remote_config *c, bool *fixed, kbox_error_t *err) {
  *fixed = false;
  for (int ch = 0; ch < KBOX_N_PORTS; ch++) {
    int id = KBOX_RS_SHELL_PORT + ch;
    c->ports[ch] = default_ports[ch];
    if (c->raw[id] == NULL || c->raw[id][0] == '\0') continue;
    uint64_t v = 0;
    if (kbox_parse_uint(from(c, id), c->raw[id], 1, 65535, &v, err) < 0) return -1;
    c->ports[ch] = (unsigned)v;
    *fixed = true;
  }
  if (!*fixed) {
    memset(c->ports, 0, sizeof(c->ports));
    return 0;
  }
  for (int a = 0; a < KBOX_N_PORTS; a++)
    for (int b = a + 1; b < KBOX_N_PORTS; b++)
      if (c->ports[a] == c->ports[b])
        return kbox_error_make(err, 0, "%s and %s are both %u; each channel needs its own port",
                               from(c, KBOX_RS_SHELL_PORT + a), from(c, KBOX_RS_SHELL_PORT + b), c->ports[a]);
  return 0;
}

/* PORT_RANGE, MIN_PORT_RANGE_SIZE, MAX_PORT_RANGE_RETRIES. */
static int finish_range(struct kbox_remote_config *c, kbox_error_t *err) {
  if (c->raw[KBOX_RS_MIN_RANGE] && kbox_parse_uint(from(c, KBOX_RS_MIN_RANGE), c->raw[KBOX_RS_MIN_RANGE], 0, 65535, &c->min_range_size, err) < 0)
    return -1;
  if (c->raw[KBOX_RS_MAX_RETRIES] && kbox_parse_uint(from(c, KBOX_RS_MAX_RETRIES), c->raw[KBOX_RS_MAX_RETRIES], 1, 1000, &c->max_retries, err) < 0)
    return -1;
  const char *r = c->raw[KBOX_RS_PORT_RANGE];
  if (r == NULL || r[0] == '\0') return 0;
  if (kbox_parse_port_range(from(c, KBOX_RS_PORT_RANGE), r, &c->port_lo, &c->port_hi, err) < 0) return -1;
  if (c->port_lo == 0 && c->port_hi == 0) return 0;
  if (c->port_lo == 0)
    return kbox_error_make(err, 0, "%s '%s': the lower port must be at least 1 (or use 0..0 for any port)", from(c, KBOX_RS_PORT_RANGE), r);
  unsigned size = c->port_hi - c->port_lo;
  if (size < c->min_range_size || size + 1 < KBOX_N_PORTS + 1) {
    kbox_error_make(err, 0, "%s '%s' holds %u ports, fewer than %s=%llu", from(c, KBOX_RS_PORT_RANGE), r, size,
                    from(c, KBOX_RS_MIN_RANGE), (unsigned long long)c->min_range_size);
    return kbox_error_hint(err, "widen the range, or lower MIN_PORT_RANGE_SIZE (at least 6 ports are needed)");
  }
  return 0;
}

/* Strip trailing whitespace (a key file usually ends with a newline). */
static void rstrip(char *s) {
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
}

/* The controller's signing key: KERNEL_KEY, else KERNEL_KEY_FILE, else KERNEL_ID with a warning. */
static int finish_key(struct kbox_remote_config *c, kbox_error_t *err) {
  c->key = dup_raw(c, KBOX_RS_KEY);
  c->key_file = dup_raw(c, KBOX_RS_KEY_FILE);
  if (c->key == NULL && c->key_file != NULL) {
    char *text = NULL;
    if (kbox_read_file(c->key_file, 4096, &text, NULL, err) < 0)
      return kbox_error_prefix(err, "%s", from(c, KBOX_RS_KEY_FILE));
    rstrip(text);
    if (text[0] == '\0') {
      free(text);
      return kbox_error_make(err, 0, "%s %s is empty; put the signing key in it", from(c, KBOX_RS_KEY_FILE), c->key_file);
    }
    c->key = text;
  }
  if (c->key == NULL && c->mode == KBOX_REMOTE_CONTROLLER) {
    c->key = xstrdup(c->kernel_id);
    c->key_is_kernel_id = true;
  }
  return 0;
}

/* EG needs KERNEL_ID, RESPONSE_ADDRESS and PUBLIC_KEY together. */
static int finish_eg(struct kbox_remote_config *c, kbox_error_t *err) {
  static const int need[] = {KBOX_RS_KERNEL_ID, KBOX_RS_RESPONSE_ADDRESS, KBOX_RS_PUBLIC_KEY};
  for (size_t i = 0; i < 3; i++)
    if (c->raw[need[i]] == NULL || c->raw[need[i]][0] == '\0')
      return kbox_error_make(err, 0, "%s is not set: Enterprise Gateway mode (RESPONSE_ADDRESS/PUBLIC_KEY given) needs KERNEL_ID, RESPONSE_ADDRESS and PUBLIC_KEY",
                             from(c, need[i]));
  c->response_address = dup_raw(c, KBOX_RS_RESPONSE_ADDRESS);
  c->public_key = dup_raw(c, KBOX_RS_PUBLIC_KEY);
  return 0;
}

static int finish_misc(struct kbox_remote_config *c, kbox_error_t *err) {
  c->language = c->raw[KBOX_RS_LANGUAGE] ? xstrdup(c->raw[KBOX_RS_LANGUAGE]) : xstrdup("python");
  if (strcasecmp(c->language, "python") != 0)
    return kbox_error_make(err, 0, "%s '%s' is not supported by this image (only python)", from(c, KBOX_RS_LANGUAGE), c->language);
  if (c->raw[KBOX_RS_IDLE_TIMEOUT] && c->raw[KBOX_RS_IDLE_TIMEOUT][0] &&
      kbox_parse_uint(from(c, KBOX_RS_IDLE_TIMEOUT), c->raw[KBOX_RS_IDLE_TIMEOUT], 0, 31536000, &c->idle_timeout_s, err) < 0)
    return -1;
  c->working_dir = dup_raw(c, KBOX_RS_WORKING_DIR);
  if (c->working_dir != NULL) {
    struct stat st;
    if (c->working_dir[0] != '/')
      return kbox_error_make(err, 0, "%s '%s' must be an absolute path", from(c, KBOX_RS_WORKING_DIR), c->working_dir);
    if (stat(c->working_dir, &st) < 0 || !S_ISDIR(st.st_mode))
      return kbox_error_make(err, errno ? errno : ENOTDIR, "%s %s", from(c, KBOX_RS_WORKING_DIR), c->working_dir);
  }
  c->username = dup_raw(c, KBOX_RS_USERNAME);
  c->require = dup_raw(c, KBOX_RS_REQUIRE);
  c->rootfs = dup_raw(c, KBOX_RS_ROOTFS);
  c->profile = dup_raw(c, KBOX_RS_PROFILE);
  const char *respond = c->raw[KBOX_RS_EG_RESPOND];
  c->respond_when_ready = true; /* the default: a kernel that dies before it answers fails EG's request */
  if (respond != NULL && respond[0] != '\0' && strcmp(respond, "ready") != 0) {
    if (strcmp(respond, "listening") != 0)
      return kbox_error_make(err, 0, "%s '%s': expected 'listening' or 'ready'", from(c, KBOX_RS_EG_RESPOND), respond);
    c->respond_when_ready = false;
  }
  if (c->raw[KBOX_RS_STATUS_FILE] == NULL) c->status_file = xstrdup("/tmp/kbox-status.json");
  else c->status_file = dup_raw(c, KBOX_RS_STATUS_FILE);
  return 0;
}

int kbox_remote_config_finish(struct kbox_remote_config *c, kbox_error_t *err) {
  bool fixed = false;
  if (finish_ports(c, &fixed, err) < 0) return -1;
  bool eg = (c->raw[KBOX_RS_RESPONSE_ADDRESS] && c->raw[KBOX_RS_RESPONSE_ADDRESS][0]) ||
            (c->raw[KBOX_RS_PUBLIC_KEY] && c->raw[KBOX_RS_PUBLIC_KEY][0]);
  c->mode = eg ? KBOX_REMOTE_EG : fixed ? KBOX_REMOTE_CONTROLLER : KBOX_REMOTE_NONE;
  if (c->mode == KBOX_REMOTE_NONE) {
    kbox_error_make(err, 0, "neither Enterprise Gateway (RESPONSE_ADDRESS, PUBLIC_KEY, KERNEL_ID) nor kernel controller (KERNEL_SHELL_PORT ...) variables are set");
    return kbox_error_hint(err, "run this image from Enterprise Gateway or jupyter-kernel-controller, or set those variables (see 'kbox entrypoint --help')");
  }
  if (eg && finish_eg(c, err) < 0) return -1;
  if (c->raw[KBOX_RS_KERNEL_ID] == NULL || c->raw[KBOX_RS_KERNEL_ID][0] == '\0')
    return kbox_error_make(err, 0, "KERNEL_ID is not set; the kernel's id is required");
  if (kbox_validate_id(from(c, KBOX_RS_KERNEL_ID), c->raw[KBOX_RS_KERNEL_ID], err) < 0) return -1;
  c->kernel_id = xstrdup(c->raw[KBOX_RS_KERNEL_ID]);
  if (finish_range(c, err) < 0 || finish_key(c, err) < 0 || finish_misc(c, err) < 0) return -1;
  if (c->key_is_kernel_id)
    kbox_warn("no KERNEL_KEY or KERNEL_KEY_FILE: signing messages with KERNEL_ID, which the controller publishes; anyone who can read the Kernel resource can forge messages. Mount a secret and set KERNEL_KEY_FILE");
  return 0;
}
