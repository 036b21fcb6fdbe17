#include "remote/protections.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"

const char *const kbox_prot_names[KBOX_PROT_COUNT] = {"userns", "pidns", "mountns", "netns", "ipcns",
                                                      "utsns", "cgroupns", "cgroup", "seccomp", "caps"};

static const uint64_t ns_flag[KBOX_PROT_COUNT] = {
    [KBOX_PROT_USERNS] = CLONE_NEWUSER, [KBOX_PROT_PIDNS] = CLONE_NEWPID, [KBOX_PROT_MOUNTNS] = CLONE_NEWNS,
    [KBOX_PROT_NETNS] = CLONE_NEWNET,   [KBOX_PROT_IPCNS] = CLONE_NEWIPC, [KBOX_PROT_UTSNS] = CLONE_NEWUTS,
    [KBOX_PROT_CGROUPNS] = CLONE_NEWCGROUP,
};

enum probe_kind { PROBE_NS, PROBE_SECCOMP, PROBE_CAPS };

/* In the probe child: try one thing, exit 0 or with the errno. */
__attribute__((noreturn)) static void probe_child(enum probe_kind kind, uint64_t flags, bool in_userns) {
  if (in_userns && unshare(CLONE_NEWUSER) < 0) _exit(errno & 0xff);
  int r = 0;
  if (kind == PROBE_NS) {
    r = unshare((int)flags);
  } else if (kind == PROBE_CAPS) {
    r = prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0);
  } else {
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {.len = 1, .filter = &allow};
    r = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (r == 0) r = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
  }
  _exit(r < 0 ? (errno & 0xff) : 0);
}

/* Run one probe in a child; returns 0 or the errno it failed with. */
static int probe(enum probe_kind kind, uint64_t flags, bool in_userns) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return errno;
  if (pid == 0) probe_child(kind, flags, in_userns);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(st)) return EIO;
  return WEXITSTATUS(st);
}

__attribute__((format(printf, 3, 4))) static void set_missing(struct kbox_protections *p, int i, const char *fmt, ...) {
  p->active[i] = false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->why[i], sizeof(p->why[i]), fmt, ap);
  va_end(ap);
}

/* Our own cgroup directory (v2, or the v1 memory hierarchy), when it is writable. */
static bool own_cgroup_writable(void) {
  cleanup_free char *text = NULL;
  kbox_error_t ignored = NULL;
  if (kbox_read_file("/proc/self/cgroup", 65536, &text, NULL, &ignored) < 0) {
    kbox_error_free(&ignored);
    return false;
  }
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL) continue;
    *c2 = '\0';
    char dir[4096];
    if (strcmp(c1 + 1, "") == 0 && strncmp(line, "0", 1) == 0)
      snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s", c2 + 1);
    else if (strstr(c1 + 1, "memory") != NULL)
      snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory%s", c2 + 1);
    else
      continue;
    if (access(dir, W_OK) == 0) return true;
  }
  return false;
}

void kbox_protections_probe(struct kbox_protections *p) {
  memset(p, 0, sizeof(*p));
  int e = probe(PROBE_NS, CLONE_NEWUSER, false);
  p->active[KBOX_PROT_USERNS] = e == 0;
  if (e != 0) set_missing(p, KBOX_PROT_USERNS, "creating a user namespace: %s", strerror(e));
  bool in_userns = p->active[KBOX_PROT_USERNS];
  for (int i = KBOX_PROT_PIDNS; i <= KBOX_PROT_CGROUPNS; i++) {
    e = probe(PROBE_NS, ns_flag[i], in_userns);
    p->active[i] = e == 0;
    if (e != 0) set_missing(p, i, "unshare: %s", strerror(e));
  }
  e = probe(PROBE_CAPS, 0, in_userns);
  p->active[KBOX_PROT_CAPS] = e == 0;
  if (e != 0) set_missing(p, KBOX_PROT_CAPS, "dropping from the bounding set: %s", strerror(e));
  e = probe(PROBE_SECCOMP, 0, false);
  p->active[KBOX_PROT_SECCOMP] = e == 0;
  if (e != 0) set_missing(p, KBOX_PROT_SECCOMP, "installing a filter: %s", strerror(e));
  /* Provisional: the entrypoint confirms it once the sandbox has (or has not) got its cgroup. */
  p->active[KBOX_PROT_CGROUP] = own_cgroup_writable();
  if (!p->active[KBOX_PROT_CGROUP]) set_missing(p, KBOX_PROT_CGROUP, "%s", "no writable cgroup (delegate one, or rely on the pod's limits)");
}

void kbox_protections_set(struct kbox_protections *p, enum kbox_prot which, bool active, const char *why) {
  p->active[which] = active;
  snprintf(p->why[which], sizeof(p->why[which]), "%s", active ? "" : why);
}

uint64_t kbox_protections_ns_flags(const struct kbox_protections *p) {
  uint64_t f = 0;
  for (int i = 0; i < KBOX_PROT_COUNT; i++)
    if (p->active[i]) f |= ns_flag[i];
  return f;
}

int kbox_protections_parse_require(const char *list, uint32_t *mask, kbox_error_t *err) {
  *mask = 0;
  if (list == NULL) return 0;
  cleanup_free char *copy = strdup(list);
  char *save = NULL;
  for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    if (strcmp(tok, "all") == 0) {
      *mask = (1u << KBOX_PROT_COUNT) - 1;
      continue;
    }
    int found = -1;
    for (int i = 0; i < KBOX_PROT_COUNT; i++)
      if (strcmp(tok, kbox_prot_names[i]) == 0) found = i;
    if (found < 0)
      return kbox_error_make(err, 0, "KBOX_REQUIRE: unknown protection '%s' (known: userns, pidns, mountns, netns, ipcns, utsns, cgroupns, cgroup, seccomp, caps, all)", tok);
    *mask |= 1u << found;
  }
  return 0;
}

int kbox_protections_check(const struct kbox_protections *p, uint32_t required, kbox_error_t *err) {
  char missing[1024] = "";
  size_t off = 0;
  for (int i = 0; i < KBOX_PROT_COUNT; i++) {
    if (!(required & (1u << i)) || p->active[i]) continue;
    int n = snprintf(missing + off, sizeof(missing) - off, "%s%s (%s)", off ? ", " : "", kbox_prot_names[i], p->why[i]);
    if (n > 0 && (size_t)n < sizeof(missing) - off) off += (size_t)n;
  }
  if (off == 0) return 0;
  kbox_error_make(err, 0, "KBOX_REQUIRE: required protection missing in this pod: %s", missing);
  return kbox_error_hint(err, "allow it in the pod's securityContext (see docs/pods.md) or remove it from KBOX_REQUIRE");
}

void kbox_protections_summary(const struct kbox_protections *p, char *buf, size_t n) {
  size_t off = 0;
  for (int pass = 0; pass < 2; pass++) {
    int w = snprintf(buf + off, n - off, "%s", pass == 0 ? "protections active: " : "; missing: ");
    if (w > 0 && (size_t)w < n - off) off += (size_t)w;
    bool first = true;
    for (int i = 0; i < KBOX_PROT_COUNT; i++) {
      if (p->active[i] != (pass == 0)) continue;
      w = pass == 0 ? snprintf(buf + off, n - off, "%s%s", first ? "" : ",", kbox_prot_names[i])
                    : snprintf(buf + off, n - off, "%s%s (%s)", first ? "" : ", ", kbox_prot_names[i], p->why[i]);
      if (w > 0 && (size_t)w < n - off) off += (size_t)w;
      first = false;
    }
    if (first) {
      w = snprintf(buf + off, n - off, "none");
      if (w > 0 && (size_t)w < n - off) off += (size_t)w;
    }
  }
}

json_t *kbox_protections_json(const struct kbox_protections *p) {
  json_t *active = json_array();
  json_t *missing = json_object();
  for (int i = 0; i < KBOX_PROT_COUNT; i++) {
    if (p->active[i]) json_array_append_new(active, json_string(kbox_prot_names[i]));
    else json_object_set_new(missing, kbox_prot_names[i], json_string(p->why[i]));
  }
  return json_pack("{s:o, s:o}", "active", active, "missing", missing);
}

int kbox_protections_write_status(const struct kbox_protections *p, json_t *extra, const char *path, kbox_error_t *err) {
  json_t *doc = json_object();
  json_object_set_new(doc, "protections", kbox_protections_json(p));
  if (extra != NULL) json_object_update(doc, extra);
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int r = json_dump_file(doc, tmp, JSON_INDENT(2));
  json_decref(doc);
  if (r < 0) return kbox_error_make(err, errno, "KBOX_STATUS_FILE: writing %s", tmp);
  chmod(tmp, 0644);
  if (rename(tmp, path) < 0) return kbox_error_make(err, errno, "KBOX_STATUS_FILE: renaming %s to %s", tmp, path);
  return 0;
}
