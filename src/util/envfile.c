#include "util/envfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/parse.h"

static bool valid_key(const char *k, size_t n) {
  if (n == 0 || !(isalpha((unsigned char)k[0]) || k[0] == '_')) return false;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)k[i]) || k[i] == '_')) return false;
  return true;
}

int kbox_env_parse_assignment(const char *opt, const char *arg, struct kbox_strv *env, kbox_error_t *err) {
  const char *eq = strchr(arg, '=');
  char q[128];
  if (eq == NULL)
    return kbox_error_make(err, 0, "%s: '%s' is not KEY=VALUE", opt, kbox_quote(arg, q, sizeof(q)));
  cleanup_free char *key = xstrndup(arg, (size_t)(eq - arg));
  if (!valid_key(arg, (size_t)(eq - arg)))
    return kbox_error_make(err, 0, "%s: '%s' is not a valid variable name", opt, kbox_quote(key, q, sizeof(q)));
  kbox_strv_setenv(env, key, eq + 1);
  return 0;
}

/* Parse a double-quoted value starting after the opening quote; *p ends after the closing quote. */
static int parse_dquoted(const char **p, char *out, const char *where, kbox_error_t *err) {
  const char *s = *p;
  size_t o = 0;
  for (; *s != '"'; s++) {
    if (*s == '\0' || *s == '\n')
      return kbox_error_make(err, 0, "%s: unterminated double quote", where);
    if (*s == '\\' && s[1] != '\0') {
      s++;
      switch (*s) {
      case 'n': out[o++] = '\n'; break;
      case 't': out[o++] = '\t'; break;
      case 'r': out[o++] = '\r'; break;
      default: out[o++] = *s; break;
      }
      continue;
    }
    out[o++] = *s;
  }
  out[o] = '\0';
  *p = s + 1;
  return 0;
}

/* Parse the value part of a line (after '='). */
static int parse_value(const char *s, char *out, const char *where, kbox_error_t *err) {
  if (*s == '"') {
    s++;
    if (parse_dquoted(&s, out, where, err) < 0) return -1;
  } else if (*s == '\'') {
    const char *end = strchr(s + 1, '\'');
    if (end == NULL) return kbox_error_make(err, 0, "%s: unterminated single quote", where);
    memcpy(out, s + 1, (size_t)(end - s - 1));
    out[end - s - 1] = '\0';
    s = end + 1;
  } else {
    size_t n = strcspn(s, "#");
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
  }
  while (*s == ' ' || *s == '\t') s++;
  if (*s != '\0' && *s != '#')
    return kbox_error_make(err, 0, "%s: unexpected text after the quoted value", where);
  return 0;
}

/* Parse one line (without its newline). */
static int parse_line(char *line, const char *where, struct kbox_strv *env, kbox_error_t *err) {
  char *s = line;
  while (*s == ' ' || *s == '\t') s++;
  if (*s == '\0' || *s == '#') return 0;
  if (strncmp(s, "export", 6) == 0 && (s[6] == ' ' || s[6] == '\t')) {
    s += 6;
    while (*s == ' ' || *s == '\t') s++;
  }
  char *eq = strchr(s, '=');
  if (eq == NULL) return kbox_error_make(err, 0, "%s: expected KEY=VALUE", where);
  char *kend = eq;
  while (kend > s && (kend[-1] == ' ' || kend[-1] == '\t')) kend--;
  *kend = '\0';
  if (!valid_key(s, strlen(s))) {
    char q[128];
    return kbox_error_make(err, 0, "%s: '%s' is not a valid variable name", where, kbox_quote(s, q, sizeof(q)));
  }
  char *v = eq + 1;
  while (*v == ' ' || *v == '\t') v++;
  cleanup_free char *value = xmalloc(strlen(v) + 1);
  if (parse_value(v, value, where, err) < 0) return -1;
  kbox_strv_setenv(env, s, value);
  return 0;
}

int kbox_envfile_parse(const char *name, const char *text, struct kbox_strv *env, kbox_error_t *err) {
  cleanup_free char *copy = xstrdup(text);
  char *save = NULL;
  unsigned lineno = 0;
  char *cur = copy;
  while (cur != NULL) {
    char *nl = strchr(cur, '\n');
    if (nl != NULL) *nl = '\0';
    lineno++;
    size_t len = strlen(cur);
    if (len > 0 && cur[len - 1] == '\r') cur[len - 1] = '\0';
    char where[512];
    snprintf(where, sizeof(where), "%s:%u", name, lineno);
    if (parse_line(cur, where, env, err) < 0) return -1;
    cur = nl ? nl + 1 : NULL;
  }
  (void)save;
  return 0;
}

int kbox_envfile_load(const char *path, struct kbox_strv *env, kbox_error_t *err) {
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (kbox_read_file(path, KBOX_ENVFILE_MAX, &text, &len, err) < 0)
    return kbox_error_prefix(err, "--env-file");
  const char *nul = memchr(text, '\0', len);
  if (nul != NULL) {
    unsigned line = 1;
    for (const char *p = text; p < nul; p++) line += *p == '\n';
    return kbox_error_make(err, 0, "--env-file: %s:%u: contains a NUL byte (offset %zu): not a text file", path, line,
                           (size_t)(nul - text));
  }
  return kbox_envfile_parse(path, text, env, err);
}
