#include "util/strv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void kbox_strv_add_owned(struct kbox_strv *s, char *str) {
  if (str == NULL) kbox_oom(); /* the caller's strdup failed */
  if (s->n + 2 > s->cap) {
    s->cap = s->cap ? s->cap * 2 : 8;
    s->v = xrealloc(s->v, s->cap * sizeof(char *));
  }
  s->v[s->n++] = str;
  s->v[s->n] = NULL;
}

void kbox_strv_add(struct kbox_strv *s, const char *str) { kbox_strv_add_owned(s, xstrdup(str)); }

/* Index of KEY= in an env vector, or -1. */
static long env_index(const struct kbox_strv *s, const char *key) {
  size_t klen = strlen(key);
  for (size_t i = 0; i < s->n; i++)
    if (strncmp(s->v[i], key, klen) == 0 && s->v[i][klen] == '=') return (long)i;
  return -1;
}

void kbox_strv_setenv(struct kbox_strv *s, const char *key, const char *value) {
  char *entry = xasprintf("%s=%s", key, value);
  long i = env_index(s, key);
  if (i < 0) {
    kbox_strv_add_owned(s, entry);
    return;
  }
  free(s->v[i]);
  s->v[i] = entry;
}

const char *kbox_strv_getenv(const struct kbox_strv *s, const char *key) {
  long i = env_index(s, key);
  return i < 0 ? NULL : s->v[i] + strlen(key) + 1;
}

void kbox_strv_free(struct kbox_strv *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}
