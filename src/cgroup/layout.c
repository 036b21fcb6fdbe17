/* Finding the cgroup hierarchies and the place of kbox (or of another process) in them from
   /proc/{self,PID}/cgroup and our mountinfo: the only reader of those files. */
#include "cgroup/cgroup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup/files.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"

static const char *const ctl_names[KBOX_CTL_N] = {"memory", "pids", "cpu"};

/* Is NAME one of the comma-separated tokens of LIST? */
static bool has_token(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p != NULL && *p != '\0';) {
    size_t len = strcspn(p, ",");
    if (len == n && strncmp(p, name, n) == 0) return true;
    p += len;
    if (*p == ',') p++;
  }
  return false;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r != '\0'; r++) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 3;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

/* kbox's cgroup path relative to a mount whose root is ROOT. */
static char *relative_to_root(const char *path, const char *root) {
  size_t n = strlen(root);
  if (strcmp(root, "/") != 0 && strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0'))
    return xstrdup(path[n] == '\0' ? "/" : path + n);
  return xstrdup(path);
}

struct mount_line {
  char *root, *point, *fstype, *superopts;
};

/* Split one mountinfo line (modified in place); false when it is not a well-formed line. */
static bool split_mount_line(char *line, struct mount_line *m) {
  char *save = NULL, *f[5];
  for (int i = 0; i < 5; i++)
    if ((f[i] = strtok_r(i == 0 ? line : NULL, " ", &save)) == NULL) return false;
  char *sep;
  while ((sep = strtok_r(NULL, " ", &save)) != NULL && strcmp(sep, "-") != 0) {}
  if (sep == NULL) return false;
  m->root = f[3];
  m->point = f[4];
  m->fstype = strtok_r(NULL, " ", &save);
  if (m->fstype == NULL || strtok_r(NULL, " ", &save) == NULL) return false;
  m->superopts = strtok_r(NULL, " \n", &save);
  if (m->superopts == NULL) m->superopts = "";
  unescape(m->root);
  unescape(m->point);
  return true;
}

/* kbox's path in the v1 hierarchy holding CTL ("" key for v2), from /proc/self/cgroup text. */
static const char *self_path(const char *self_cgroup, const char *ctl, char *buf, size_t n) {
  cleanup_free char *copy = xstrdup(self_cgroup);
  char *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL) continue;
    *c1 = *c2 = '\0'; /* line: hierarchy id, c1 + 1: controllers, c2 + 1: path */
    bool match = ctl == NULL ? (strcmp(line, "0") == 0 && c1[1] == '\0') : has_token(c1 + 1, ctl);
    if (!match) continue;
    snprintf(buf, n, "%s", c2 + 1);
    return buf;
  }
  return NULL;
}

int kbox_cgroup_layout_parse(struct kbox_cgroup_layout *l, const char *self_cgroup, const char *mountinfo,
                             kbox_error_t *err) {
  memset(l, 0, sizeof(*l));
  cleanup_free char *copy = xstrdup(mountinfo);
  char *save = NULL;
  char path[4096];
  for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    struct mount_line m;
    if (!split_mount_line(line, &m)) continue;
    if (strcmp(m.fstype, "cgroup2") == 0 && l->v2_mount == NULL) {
      if (self_path(self_cgroup, NULL, path, sizeof(path)) == NULL) continue;
      l->v2_mount = xstrdup(m.point);
      l->v2_self = relative_to_root(path, m.root);
    } else if (strcmp(m.fstype, "cgroup") == 0) {
      for (int c = 0; c < KBOX_CTL_N; c++) {
        if (l->v1_mount[c] != NULL || !has_token(m.superopts, ctl_names[c])) continue;
        if (self_path(self_cgroup, ctl_names[c], path, sizeof(path)) == NULL) continue;
        l->v1_mount[c] = xstrdup(m.point);
        l->v1_self[c] = relative_to_root(path, m.root);
      }
    }
  }
  (void)err;
  return 0;
}

/* The layout of the process whose /proc/PID/cgroup is at cgroup_path. */
static int read_layout(struct kbox_cgroup_layout *l, const char *cgroup_path, kbox_error_t *err) {
  cleanup_free char *self = NULL;
  cleanup_free char *mounts = NULL;
  memset(l, 0, sizeof(*l));
  if (kbox_read_file(cgroup_path, 1 << 16, &self, NULL, err) < 0) return -1;
  if (kbox_read_file("/proc/self/mountinfo", 1 << 22, &mounts, NULL, err) < 0) return -1;
  return kbox_cgroup_layout_parse(l, self, mounts, err);
}

int kbox_cgroup_layout_read(struct kbox_cgroup_layout *l, kbox_error_t *err) {
  return read_layout(l, "/proc/self/cgroup", err);
}

int kbox_cgroup_layout_read_pid(struct kbox_cgroup_layout *l, pid_t pid, kbox_error_t *err) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
  return read_layout(l, path, err);
}

const char *kbox_cgroup_layout_mode(const struct kbox_cgroup_layout *l) {
  bool v1 = false;
  for (int c = 0; c < KBOX_CTL_N; c++) v1 |= l->v1_mount[c] != NULL;
  if (v1) return l->v2_mount != NULL ? "hybrid" : "v1";
  return l->v2_mount != NULL ? "v2" : "none";
}

long long kbox_cgroup_pid_memory(pid_t pid) {
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  if (kbox_cgroup_layout_read_pid(&l, pid, &err) < 0) {
    kbox_error_free(&err);
    kbox_cgroup_layout_free(&l);
    return -1;
  }
  int64_t v = -1;
  const char *mount = l.v1_mount[KBOX_CTL_MEMORY] ? l.v1_mount[KBOX_CTL_MEMORY] : l.v2_mount;
  const char *self = l.v1_mount[KBOX_CTL_MEMORY] ? l.v1_self[KBOX_CTL_MEMORY] : l.v2_self;
  if (mount != NULL) {
    cleanup_free char *dir = kbox_cgroup_parent_dir(mount, self, NULL);
    if (!kbox_cg_read_int(dir, l.v1_mount[KBOX_CTL_MEMORY] ? "memory.usage_in_bytes" : "memory.current", &v)) v = -1;
  }
  kbox_cgroup_layout_free(&l);
  return v;
}

void kbox_cgroup_layout_free(struct kbox_cgroup_layout *l) {
  free(l->v2_mount);
  free(l->v2_self);
  for (int c = 0; c < KBOX_CTL_N; c++) {
    free(l->v1_mount[c]);
    free(l->v1_self[c]);
  }
  memset(l, 0, sizeof(*l));
}

char *kbox_cgroup_parent_dir(const char *mount, const char *self, const char *parent_override) {
  const char *rel = parent_override != NULL ? parent_override : self;
  while (*rel == '/') rel++;
  char *out = xasprintf("%s%s%s", mount, *rel ? "/" : "", rel);
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/') out[--n] = '\0';
  return out;
}
